"""gRPC adapter of the training service: converts protobuf to scheduler calls and back."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError

from atlasloop.common.domain import organ_to_proto
from atlasloop.common.errors import InvalidInput
from atlasloop.training.recipe import Recipe
from atlasloop.training.runs import OrganScore, RunRecord
from atlasloop.training.scheduler import Scheduler
from atlasloop.training.v1 import training_pb2, training_pb2_grpc

MAX_PAGE = 100


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
    )


class TrainingServiceServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def StartRun(self, request, context):
        reason = request.reason.strip() or "manual"
        if len(reason) > 200:
            raise InvalidInput("reason is longer than 200 characters")
        overrides = {}
        if request.overrides.epochs:
            overrides["epochs"] = request.overrides.epochs
        if request.overrides.learning_rate:
            overrides["learning_rate"] = request.overrides.learning_rate
        try:
            Recipe.model_validate(self._scheduler.job.settings.recipe.model_dump() | overrides)
        except ValidationError as exc:
            raise InvalidInput(f"recipe overrides: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
        return training_pb2.StartRunResponse(
            run=run_to_proto(
                self._scheduler.request(f"manual:{reason}", from_originals=request.from_originals, overrides=overrides)
            )
        )

    def GetRun(self, request, context):
        return training_pb2.GetRunResponse(run=run_to_proto(self._scheduler.runs.get(request.run_id)))

    def ListRuns(self, request, context):
        if request.page_size < 0:
            raise InvalidInput("page_size must not be negative")
        size = min(request.page_size or 20, MAX_PAGE)
        try:
            start = int(request.page_token or 0)
        except ValueError:
            raise InvalidInput("page_token is not one this service issued") from None
        runs = self._scheduler.runs.list()
        page = runs[start : start + size]
        token = str(start + size) if start + size < len(runs) else ""
        return training_pb2.ListRunsResponse(runs=[run_to_proto(r) for r in page], next_page_token=token)

    def WatchRun(self, request, context):
        for update in self._scheduler.job.progress.watch(request.run_id):
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

    def RollbackModelSet(self, request, context):
        if not request.model_set:
            raise InvalidInput("model_set is empty")
        return training_pb2.RollbackModelSetResponse(
            model_set=self._scheduler.rollback(request.model_set, request.reason.strip())
        )
