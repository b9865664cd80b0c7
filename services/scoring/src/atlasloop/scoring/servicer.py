"""gRPC adapter of the scoring service: protobuf in, :class:`ScoringCore` calls, protobuf out."""

from __future__ import annotations

from atlasloop.common.case_grants import check_case_read
from atlasloop.common.domain import ScoringMode, Signal, organ_to_proto
from atlasloop.common.errors import InvalidInput
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.labels import ORGANS
from atlasloop.scoring.core import ScoringCore
from atlasloop.scoring.v1 import scoring_pb2, scoring_pb2_grpc


def _mode(value: int) -> str:
    """The requested mode; "" (the service's default) when unspecified."""
    return ScoringMode.from_proto(value) if value else ""


def case_scores(document: dict) -> scoring_pb2.CaseScores:
    organs = sorted(document["organs"], key=lambda o: (-o["heat_sum"], -o["score"]))
    return scoring_pb2.CaseScores(
        case_id=document["case_id"],
        model_set=document["model_set"],
        mode=ScoringMode(document["mode"]).to_proto(),
        priority=document["priority"],
        organs=[
            scoring_pb2.OrganScore(
                organ=organ_to_proto(o["organ"]), attention=o["score"], heat_sum=o["heat_sum"], flags=o["flags"]
            )
            for o in organs
        ],
        regions=[
            scoring_pb2.AttentionRegion(
                organ=organ_to_proto(r["organ"]),
                box=common_pb2.BoundingBox(
                    min_voxel=r["min_voxel"], max_voxel=r["max_voxel"], min_mm=r["min_mm"], max_mm=r["max_mm"]
                ),
                volume_ml=r["volume_ml"],
                peak_heat=r["peak_heat"],
                mean_heat=r["mean_heat"],
                dominant_signal=Signal(r["dominant_signal"]).to_proto(),
            )
            for r in document["regions"]
        ],
    )


class ScoringServiceServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, core: ScoringCore) -> None:
        self._core = core

    def ScoreCase(self, request, context):
        mode = _mode(request.mode) or self._core.default_mode
        results = self._core.score(request.case_id, request.model_set)
        model_set = request.model_set or self._core.latest_model_set(request.case_id)
        return scoring_pb2.ScoreCaseResponse(scores=case_scores(results[mode].as_json() | {"model_set": model_set}))

    def GetCaseScores(self, request, context):
        check_case_read(request.case_id)
        stored = self._core.stored(request.case_id, request.model_set)
        return scoring_pb2.GetCaseScoresResponse(scores=case_scores(stored.document))

    def ScoreExternal(self, request, context):
        if not request.case_id or not request.label_map:
            raise InvalidInput("ScoreExternal needs case_id and label_map (NIfTI bytes)")
        model_set, score = self._core.score_external(request.case_id, request.label_map, request.model_set)
        return scoring_pb2.ScoreExternalResponse(
            model_set=model_set,
            coverage=score.coverage,
            organs=[
                scoring_pb2.ExternalOrganScore(
                    organ=organ_to_proto(o.organ),
                    volume_ml=o.volume_ml,
                    dice_vs_ensemble=o.dice_vs_ensemble,
                    mean_dice_vs_members=o.mean_dice_vs_members,
                    members_agreement=o.members_agreement,
                    flags=o.flags,
                )
                for o in score.organs
            ],
        )

    def ProposeRound(self, request, context):
        quotas: dict[str, int] = {}
        for quota in request.quotas:
            if quota.organ not in ORGANS:
                raise InvalidInput("quota organ must be one of the schema's organs")
            quotas[ORGANS[quota.organ]] = quota.cases
        chosen = self._core.propose("", _mode(request.mode), request.fraction, request.max_cases, quotas)
        return scoring_pb2.ProposeRoundResponse(
            cases=[
                scoring_pb2.RankedCase(
                    case_id=c.case_id, priority=c.priority, organs=[organ_to_proto(o) for o in c.organ_order]
                )
                for c in chosen
            ]
        )
