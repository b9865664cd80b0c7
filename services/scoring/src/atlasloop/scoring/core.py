"""The scoring service's operations: score a stored prediction, read scores, propose a round.

Idempotent under redelivery of ``case.predicted``: attention and scores are written first, then
``case.scored`` is published with an event id derived from (case, model set), then a marker is
written. A redelivered event finds the marker and does nothing; a crash between publish and marker
publishes again with the same event id, which consumers deduplicate.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from atlasloop.common import layout, observe
from atlasloop.common.domain import organ_to_proto
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.events import EventProducer, new_meta
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.compact import AttentionMaps, Cropped, EnsembleOutput
from atlasloop.imaging.labels import validate_label_map
from atlasloop.imaging.volume import load_nifti
from atlasloop.method.case_scoring import MODES, CaseResult, score_case
from atlasloop.method.external import ExternalScore, score_external
from atlasloop.method.improved import ImprovedConfig, offsets_of_set
from atlasloop.method.selection import Candidate, budget, select

log = logging.getLogger(__name__)
EVENT_NAMESPACE = uuid.UUID("6f1c7a52-7d55-4c0b-9a59-3f5bd1b2e0a1")


@dataclass(frozen=True)
class StoredScores:
    case_id: str
    model_set: str
    mode: str
    document: dict


class ScoringCore:
    def __init__(
        self, store: ObjectStore, producer: EventProducer, default_mode: str, improved: ImprovedConfig | None = None
    ) -> None:
        if default_mode not in MODES:
            raise InvalidInput(f"mode must be one of {MODES}")
        self._store = store
        self._producer = producer
        self.default_mode = default_mode
        self.improved = improved or ImprovedConfig()
        self._offsets: dict[str, dict[str, float]] = {}  # model set -> its expected-Dice offsets (immutable)

    def improved_for(self, model_set: str) -> ImprovedConfig:
        """The improved scoring for ``model_set``: with the expected-Dice offsets its publisher
        fitted (``atlasloop.method.improved``), none when the set document has none or is absent."""
        if not self.improved.calibrate_expected_dice:
            return self.improved
        if model_set not in self._offsets:
            try:
                document = self._store.get_json(layout.model_set_key(model_set))
            except NotFound:
                document = {}
            try:
                self._offsets[model_set] = offsets_of_set(document)
            except (ValueError, TypeError) as exc:
                raise InvalidInput(f"model set {model_set!r} has unusable expected-Dice offsets: {exc}") from None
        return self.improved.with_offsets(self._offsets[model_set])

    def latest_model_set(self, case_id: str) -> str:
        prefix = layout.predictions_prefix(case_id)
        sets = layout.sub_names(prefix, list(self._store.list_prefixes(prefix)))
        if not sets:
            raise NotFound(f"case {case_id!r} has no stored prediction")
        return sets[-1]

    def load(self, case_id: str, model_set: str) -> EnsembleOutput:
        try:
            return EnsembleOutput.from_bytes(self._store.get_bytes(layout.ensemble_key(case_id, model_set)))
        except NotFound:
            raise NotFound(f"case {case_id!r} has no prediction by model set {model_set!r}") from None
        except (ValueError, KeyError, OSError) as exc:
            raise InvalidInput(f"stored prediction of {case_id!r} is unreadable: {exc}") from None

    def score(self, case_id: str, model_set: str = "", publish: bool = True) -> dict[str, CaseResult]:
        """Score one stored prediction in every mode, store the results, announce the default mode's."""
        with observe.step("scoring", "score case", case_id=case_id):
            return self._score(case_id, model_set, publish)

    def _score(self, case_id: str, model_set: str, publish: bool) -> dict[str, CaseResult]:
        started = time.perf_counter()
        model_set = model_set or self.latest_model_set(case_id)
        output = self.load(case_id, model_set)
        improved = self.improved_for(model_set)
        results = {mode: score_case(case_id, output, mode, improved) for mode in MODES}
        for mode, result in results.items():
            self._write(case_id, model_set, mode, output, result)
        if publish:
            self._publish(case_id, model_set, results[self.default_mode])
        log.info(
            "case scored",
            extra={
                "case_id": case_id,
                "model_set": model_set,
                "priority": round(results[self.default_mode].priority, 1),
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return results

    def on_case_predicted(self, case_id: str, model_set: str) -> bool:
        """Handle a (possibly redelivered) ``case.predicted``; False when it was done already."""
        if self._store.exists(layout.scored_marker_key(case_id, model_set)):
            log.info("already scored", extra={"case_id": case_id, "model_set": model_set})
            return False
        self.score(case_id, model_set)
        return True

    def _write(self, case_id: str, model_set: str, mode: str, output: EnsembleOutput, result: CaseResult) -> None:
        maps = AttentionMaps(
            output.shape, output.affine, {o.organ: Cropped(o.attention.box, o.attention.stored) for o in result.organs}
        )
        self._store.put_bytes(layout.attention_key(case_id, model_set, mode), maps.to_bytes())
        document = result.as_json() | {"model_set": model_set}
        self._store.put_json(layout.scores_key(case_id, model_set, mode), document)
        self._store.put_json(
            layout.score_index_key(model_set, mode, case_id),
            {
                "case_id": case_id,
                "priority": result.priority,
                "organ_order": result.organ_order(),
                "organ_scores": {o.organ: o.score for o in result.organs},
            },
        )

    def _publish(self, case_id: str, model_set: str, result: CaseResult) -> None:
        meta = new_meta("scoring")
        meta.event_id = str(uuid.uuid5(EVENT_NAMESPACE, f"{case_id}/{model_set}"))
        organs = [
            events_pb2.OrganPriority(organ=organ_to_proto(o.organ), attention=o.score, heat_sum=o.heat_sum)
            for o in sorted(result.organs, key=lambda o: (-o.heat_sum, -o.score))
        ]
        self._producer.publish(
            events_pb2.CaseScored(
                meta=meta, case_id=case_id, model_set=model_set, priority=result.priority, organs=organs
            ),
            key=case_id,
        )
        self._store.put_json(layout.scored_marker_key(case_id, model_set), {"event_id": meta.event_id})

    def score_external(self, case_id: str, data: bytes, model_set: str = "") -> tuple[str, ExternalScore]:
        """An external label map (NIfTI bytes) against the case's ensemble; nothing is stored."""
        model_set = model_set or self.latest_model_set(case_id)
        output = self.load(case_id, model_set)
        with tempfile.TemporaryDirectory(prefix="atlasloop-external-") as tmp:
            suffix = ".nii.gz" if data[:2] == b"\x1f\x8b" else ".nii"
            path = Path(tmp) / f"external{suffix}"
            path.write_bytes(data)
            labels = load_nifti(path, labels=True)  # header checked before the voxels are read
        labels = labels.with_array(validate_label_map(labels.array, "external label map"))
        score = score_external(output, labels, self.improved.volume_ranges_ml)
        log.info("external labels scored", extra={"case_id": case_id, "model_set": model_set, "flagged": score.flagged})
        return model_set, score

    def stored(self, case_id: str, model_set: str = "", mode: str = "") -> StoredScores:
        model_set = model_set or self.latest_model_set(case_id)
        mode = mode or self.default_mode
        try:
            document = self._store.get_json(layout.scores_key(case_id, model_set, mode))
        except NotFound:
            raise NotFound(f"case {case_id!r} has not been scored for model set {model_set!r}") from None
        return StoredScores(case_id, model_set, mode, document)

    def propose(
        self, model_set: str, mode: str, fraction: float, max_cases: int, quotas: dict[str, int]
    ) -> list[Candidate]:
        if not 0.0 <= fraction <= 1.0 or max_cases < 0:
            raise InvalidInput(f"fraction must be within 0..1 and max_cases >= 0 (got {fraction}, {max_cases})")
        if any(n < 0 for n in quotas.values()):
            raise InvalidInput("organ quotas must be >= 0")
        mode = mode or self.default_mode
        if not model_set:
            sets = layout.sub_names(layout.SCORES, list(self._store.list_prefixes(layout.SCORES)))
            if not sets:
                return []
            model_set = sets[-1]
        candidates = []
        for key in self._store.list_keys(layout.score_index_prefix(model_set, mode)):
            entry = self._store.get_json(key)
            candidates.append(
                Candidate(
                    entry["case_id"],
                    float(entry["priority"]),
                    entry["organ_scores"],
                    tuple(entry["organ_order"]),
                )
            )
        if not candidates:
            return []
        return select(candidates, budget(len(candidates), fraction, max_cases), quotas)
