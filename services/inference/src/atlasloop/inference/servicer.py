"""gRPC adapter of the inference service: predictions stream their progress; model sets listed."""

from __future__ import annotations

from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.inference.serving import Serving
from atlasloop.inference.v1 import inference_pb2, inference_pb2_grpc


class InferenceServiceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, serving: Serving, store: ObjectStore) -> None:
        self._serving = serving
        self._store = store

    def Predict(self, request, context):
        if request.model_set and request.model_set != self._serving.model_set:
            raise InvalidInput(f"model set {request.model_set!r} is not the one served ({self._serving.model_set!r})")
        if not request.case_id or not self._store.exists(f"cases/{request.case_id}/meta.json"):
            raise NotFound(f"case {request.case_id!r} does not exist")
        for step in self._serving.predict(request.case_id):
            if step["kind"] == "member":
                architecture, _, version = step["member"].partition("@")
                yield inference_pb2.PredictResponse(member_finished=inference_pb2.MemberFinished(
                    member=inference_pb2.ModelVersion(architecture=architecture, version=version),
                    seconds=step["seconds"]))
            else:
                yield inference_pb2.PredictResponse(ensemble_finished=inference_pb2.EnsembleFinished(
                    model_set=step["model_set"], predictions_prefix=step["predictions_prefix"],
                    label_version=step["label_version"], seconds=step["seconds"]))

    def ListModelSets(self, request, context):
        registry = self._serving.registry
        try:
            current = registry.current()
        except NotFound:
            current = ""
        sets = []
        for document in registry.model_sets():
            members = []
            for m in document["members"]:
                size = registry.manifest(m["architecture"], m["version"])["config"]["size"]
                members.append(inference_pb2.ModelVersion(architecture=m["architecture"], version=m["version"],
                                                          size=size))
            sets.append(inference_pb2.ModelSet(version=document["version"], members=members,
                                               current=document["version"] == current))
        return inference_pb2.ListModelSetsResponse(model_sets=sets)
