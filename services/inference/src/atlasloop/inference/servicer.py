"""gRPC adapter of the inference service: predictions stream their progress; model sets listed."""

from __future__ import annotations

from atlasloop.inference.core import EnsembleFinished, InferenceCore, MemberFinished
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc


def _step(step: MemberFinished | EnsembleFinished) -> inference_pb2.PredictResponse:
    if isinstance(step, MemberFinished):
        return inference_pb2.PredictResponse(
            member_finished=inference_pb2.MemberFinished(
                member=inference_pb2.ModelVersion(architecture=step.member.architecture, version=step.member.version),
                seconds=step.seconds,
            )
        )
    return inference_pb2.PredictResponse(
        ensemble_finished=inference_pb2.EnsembleFinished(
            model_set=step.model_set,
            predictions_prefix=step.predictions_prefix,
            label_version=step.label_version,
            seconds=step.seconds,
        )
    )


class InferenceServiceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, core: InferenceCore) -> None:
        self._core = core

    def Predict(self, request, context):
        for step in self._core.predict(request.case_id, request.model_set):
            yield _step(step)

    def ListModelSets(self, request, context):
        sets = [
            inference_pb2.ModelSet(
                version=info.version,
                current=info.current,
                members=[
                    inference_pb2.ModelVersion(architecture=m.architecture, version=m.version, size=size)
                    for m, size in info.members
                ],
            )
            for info in self._core.model_sets()
        ]
        return inference_pb2.ListModelSetsResponse(model_sets=sets)
