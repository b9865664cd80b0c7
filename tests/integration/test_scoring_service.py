"""The scoring service on real S3 and Kafka: a redelivered case.predicted is scored once, scores and
regions come back over gRPC, and a round proposal respects the budget."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from atlasloop.cli.__main__ import main as cli_main
from atlasloop.common import events
from atlasloop.common.layout import LABEL_SCHEMA_KEY, ensemble_key
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.imaging.volume import save_nifti
from atlasloop.method.improved import ImprovedConfig
from atlasloop.method.simulate import ErrorModel, simulate
from atlasloop.scoring.app import build
from atlasloop.scoring.settings import ScoringSettings
from atlasloop.scoring.v1 import scoring_pb2, scoring_pb2_grpc

from .conftest import EventCollector, start_in_process

pytestmark = pytest.mark.integration
TOKENS = {"tok-svc": "svc:service", "tok-ann": "ann:annotator"}
SVC = [("authorization", "Bearer tok-svc")]


def test_redelivered_prediction_scored_once_and_round_proposed(stack, unique):
    settings = ScoringSettings(
        port=0,
        health_poll_s=60,
        s3=stack.s3_settings(bucket=f"scoring-{unique}"),
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"sc{unique}."}),
        auth={"dev_tokens": TOKENS},
    )
    store = ObjectStore(settings.s3)
    store.check_bucket()
    for i in range(3):
        _, labels = render(np.random.default_rng([7, i]), SITES["A"], 5.0)
        output = simulate(labels.array, labels.affine, np.random.default_rng(i))
        store.put_bytes(ensemble_key(f"case-{i}", "ms-0001"), output.to_bytes())
    scored = EventCollector(settings.kafka, [events_pb2.CaseScored])
    service, channel = start_in_process(build(settings), settings)
    try:
        producer = events.EventProducer(settings.kafka, "test-inference")
        for i in range(3):
            event = events_pb2.CasePredicted(
                meta=events.new_meta("inference"), case_id=f"case-{i}", model_set="ms-0001"
            )
            producer.publish(event, key=event.case_id)
            if i == 0:
                producer.publish(event, key=event.case_id)  # delivered twice
        received = scored.wait_for(3, timeout_s=180)  # returns as soon as they arrive
        assert sorted(e.case_id for e in received) == ["case-0", "case-1", "case-2"]
        assert len({e.meta.event_id for e in received}) == 3

        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        scores = stub.GetCaseScores(scoring_pb2.GetCaseScoresRequest(case_id="case-0"), metadata=SVC).scores
        event = next(e for e in received if e.case_id == "case-0")
        assert scores.priority == event.priority > 0 and scores.mode == scoring_pb2.SCORING_MODE_REFERENCE
        assert scores.regions and all(r.volume_ml > 0 for r in scores.regions)
        proposal = stub.ProposeRound(scoring_pb2.ProposeRoundRequest(round=1, max_cases=2), metadata=SVC)
        assert len(proposal.cases) == 2
        priorities = sorted((e.priority for e in received), reverse=True)[:2]
        assert [c.priority for c in proposal.cases] == priorities
        again = stub.ScoreCase(
            scoring_pb2.ScoreCaseRequest(case_id="case-1", mode=scoring_pb2.SCORING_MODE_IMPROVED),
            metadata=[("authorization", "Bearer tok-svc")],
        ).scores
        assert again.mode == scoring_pb2.SCORING_MODE_IMPROVED
    finally:
        scored.close()
        channel.close()
        service.stop(0)


def test_an_external_label_map_is_scored_as_one_more_member(stack, unique, tmp_path, monkeypatch, capsys):
    """``atlasloop score-external`` against the served ensemble: a map with the kidneys' names swapped
    and the spleen left out is flagged there (exit 3), the right organs are not; garbage and an
    annotator are refused; nothing is stored."""
    settings = ScoringSettings(
        port=0,
        health_poll_s=60,
        consume_events=False,
        s3=stack.s3_settings(bucket=f"external-{unique}"),
        kafka=stack.kafka_settings().model_copy(update={"topic_prefix": f"ex{unique}."}),
        auth={"dev_tokens": {**TOKENS, "tok-rev": "rev:reviewer"}},
    )
    store = ObjectStore(settings.s3)
    store.check_bucket()
    _, labels = render(np.random.default_rng([9, 1]), SITES["A"], 4.0)
    output = simulate(labels.array, labels.affine, np.random.default_rng(1), ErrorModel(shared_error_rate=0.0))
    store.put_bytes(ensemble_key("ext-1", "ms-0001"), output.to_bytes())
    wrong = labels.array.copy()
    left, right = wrong == ORGAN_IDS["kidney_left"], wrong == ORGAN_IDS["kidney_right"]
    wrong[left], wrong[right] = ORGAN_IDS["kidney_right"], ORGAN_IDS["kidney_left"]
    wrong[wrong == ORGAN_IDS["spleen"]] = 0
    save_nifti(labels.with_array(wrong), tmp_path / "vendor.nii.gz")
    (tmp_path / "garbage.nii.gz").write_bytes(b"\x1f\x8b" + b"\0" * 100)

    def stored() -> list[str]:  # besides the project's label schema, which the service records when ready
        return sorted(k for k in store.list_keys("") if k != LABEL_SCHEMA_KEY)

    before = stored()
    service, channel = start_in_process(build(settings), settings)
    try:
        monkeypatch.setenv("ATLASLOOP_SCORING_TARGET", f"127.0.0.1:{service.port}")
        argv = ["score-external", "ext-1", str(tmp_path / "vendor.nii.gz"), "--json", "--token", "tok-rev"]
        assert cli_main(argv) == 3
        reply = json.loads(capsys.readouterr().out)
        flags = {o["organ"]: o["flags"] for o in reply["organs"]}
        assert reply["model_set"] == "ms-0001" and reply["coverage"] == 1.0
        assert {"laterality", "disagrees"} <= set(flags["kidney_left"]) and "laterality" in flags["kidney_right"]
        assert "missing" in flags["spleen"] and flags["stomach"] == [] and flags["aorta"] == []
        assert cli_main(["score-external", "ext-1", str(tmp_path / "vendor.nii.gz"), "--token", "tok-rev"]) == 3
        assert "laterality" in capsys.readouterr().out

        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        request = scoring_pb2.ScoreExternalRequest(
            case_id="ext-1", label_map=(tmp_path / "garbage.nii.gz").read_bytes()
        )
        with pytest.raises(grpc.RpcError) as garbage:
            stub.ScoreExternal(request, metadata=[("authorization", "Bearer tok-rev")])
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        request.label_map = (tmp_path / "vendor.nii.gz").read_bytes()
        with pytest.raises(grpc.RpcError) as annotator:
            stub.ScoreExternal(request, metadata=[("authorization", "Bearer tok-ann")])
        assert annotator.value.code() == grpc.StatusCode.PERMISSION_DENIED
        request.case_id = "ext-none"
        with pytest.raises(grpc.RpcError) as unknown:
            stub.ScoreExternal(request, metadata=[("authorization", "Bearer tok-rev")])
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()
        service.stop(0)
    assert stored() == before  # nothing stored


def test_improved_scoring_gates_with_the_offsets_of_the_set_that_predicted(stack, unique):
    """Two sets predicted the same case: the one whose document carries an expected-Dice offset for an
    organ has that organ gated (no regions, no score) and the offset recorded; a set without offsets,
    or a scoring configured not to calibrate, gates on the raw value; unusable offsets are refused
    with nothing stored."""
    from atlasloop.common.errors import InvalidInput
    from atlasloop.common.layout import model_set_key, scores_key
    from atlasloop.method.improved import ERROR_MATTERS_DICE
    from atlasloop.scoring.core import ScoringCore

    store = ObjectStore(stack.s3_settings(bucket=f"scoring-offsets-{unique}"))
    store.check_bucket()
    _, labels = render(np.random.default_rng([11, 0]), SITES["B"], 4.0)
    output = simulate(labels.array, labels.affine, np.random.default_rng(0), ErrorModel())
    for model_set in ("raw", "calibrated", "broken"):
        store.put_bytes(ensemble_key("case-0", model_set), output.to_bytes())
    core = ScoringCore(store, None, "reference")  # type: ignore[arg-type] # publish=False sends nothing
    raw = core.score("case-0", "raw", publish=False)["improved"]
    with_regions = {r.organ for r in raw.regions}
    target = max(
        (o for o in raw.organs if o.organ in with_regions and not o.flags),
        key=lambda o: o.expected_dice or 0.0,
    )
    lift = round(ERROR_MATTERS_DICE - (target.expected_dice or 0.0) + 0.01, 3)
    store.put_json(
        model_set_key("calibrated"), {"version": "calibrated", "expected_dice_offsets": {target.organ: lift}}
    )
    store.put_json(model_set_key("broken"), {"version": "broken", "expected_dice_offsets": {target.organ: 1.5}})

    core.score("case-0", "calibrated", publish=False)
    stored = {o["organ"]: o for o in store.get_json(scores_key("case-0", "calibrated", "improved"))["organs"]}
    assert stored[target.organ]["gated"] and stored[target.organ]["score"] == 0
    assert stored[target.organ]["expected_dice_offset"] == pytest.approx(lift)
    assert stored[target.organ]["expected_dice"] == pytest.approx(target.expected_dice)
    before = {o["organ"]: o for o in store.get_json(scores_key("case-0", "raw", "improved"))["organs"]}
    assert not before[target.organ]["gated"] and before[target.organ]["expected_dice_offset"] == 0.0

    uncalibrated = ScoringCore(store, None, "reference", ImprovedConfig(calibrate_expected_dice=False))  # type: ignore[arg-type]
    assert not next(
        o
        for o in uncalibrated.score("case-0", "calibrated", publish=False)["improved"].organs
        if o.organ == target.organ
    ).gated

    with pytest.raises(InvalidInput, match="unusable expected-Dice offsets"):
        core.score("case-0", "broken", publish=False)
    assert not store.exists(scores_key("case-0", "broken", "improved"))
    assert not store.exists(scores_key("case-0", "broken", "reference"))
