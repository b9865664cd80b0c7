"""The scoring service on real S3 and Kafka: a redelivered case.predicted is scored once, scores and
regions come back over gRPC, and a round proposal respects the budget."""

from __future__ import annotations

import numpy as np
import pytest

from atlasloop.common import events
from atlasloop.common.layout import ensemble_key
from atlasloop.common.objectstore import ObjectStore
from atlasloop.events.v1 import events_pb2
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.method.simulate import simulate
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
