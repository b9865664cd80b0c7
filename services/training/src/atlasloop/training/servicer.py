"""gRPC adapter of the training service: protobuf in, :class:`TrainingCore` calls, protobuf out."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from atlasloop.common.auth import current_principal
from atlasloop.common.domain import organ_to_proto
from atlasloop.training.core import TrainingCore
from atlasloop.training.runs import OrganScore, RunRecord
from atlasloop.training.v1 import training_pb2, training_pb2_grpc


def _metrics(metrics: dict[str, OrganScore]) -> list[training_pb2.OrganMetric]:
    return [
        training_pb2.OrganMetric(organ=organ_to_proto(organ), dice=m.dice, nsd=m.nsd) for organ, m in metrics.items()
    ]


def run_to_proto(run: RunRecord) -> training_pb2.Run:
    created = Timestamp()
    created.FromDatetime(datetime.fromisoformat(run.created_at))
    return training_pb2.Run(
        run_id=run.run_id,
        state=run.state.to_proto(),
        trigger=run.trigger,
        base_model_set=run.base_model_set,
        published_model_set=run.published_model_set,
        reason=run.reason,
        current_metrics=_metrics(run.current_metrics),
        candidate_metrics=_metrics(run.candidate_metrics),
        created_at=created,
        seconds=run.seconds,
        label_versions=run.label_versions,
        site_current_metrics=_metrics(run.site_current_metrics),
        site_candidate_metrics=_metrics(run.site_candidate_metrics),
        site_held_out=run.site_held_out,
        held_out=run.held_out,
        calibration=[
            training_pb2.OrganCalibration(
                architecture=architecture,
                organ=organ_to_proto(organ),
                temperature=c["temperature"],
                ece_before=c["ece_before"],
                ece_after=c["ece_after"],
                held_out=c["held_out"],
                voxels=c["voxels"],
                applied=bool(c.get("applied", False)),
            )
            for architecture, organs in sorted(run.calibration.items())
            for organ, c in sorted(organs.items())
        ],
        expected_dice_offsets=[
            training_pb2.ExpectedDiceOffset(organ=organ_to_proto(organ), offset=offset)
            for organ, offset in sorted(run.expected_dice_offsets.items())
        ],
    )


class TrainingServiceServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, core: TrainingCore) -> None:
        self._core = core

    def StartRun(self, request, context):
        run = self._core.start_run(
            request.reason, request.from_originals, request.overrides.epochs, request.overrides.learning_rate
        )
        return training_pb2.StartRunResponse(run=run_to_proto(run))

    def GetRun(self, request, context):
        return training_pb2.GetRunResponse(run=run_to_proto(self._core.run(request.run_id)))

    def ListRuns(self, request, context):
        runs, token = self._core.runs(request.page_size, request.page_token)
        return training_pb2.ListRunsResponse(runs=[run_to_proto(r) for r in runs], next_page_token=token)

    def WatchRun(self, request, context):
        for update in self._core.watch(request.run_id):
            if not context.is_active():
                return
            yield training_pb2.WatchRunResponse(
                run_id=request.run_id,
                state=update.state.to_proto(),
                architecture=update.architecture,
                epoch=update.epoch,
                loss=update.loss,
                validation=_metrics(update.validation),
                eta_s=update.eta_s,
            )

    def CancelRun(self, request, context):
        run = self._core.cancel(request.run_id, current_principal().name)
        return training_pb2.CancelRunResponse(run=run_to_proto(run))

    def RollbackModelSet(self, request, context):
        return training_pb2.RollbackModelSetResponse(model_set=self._core.rollback(request.model_set, request.reason))
