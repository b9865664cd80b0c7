"""A new install serves no model set until an operator imports one (deploy/README.md, "The first
model set"). Meanwhile the ensemble's replicas stay up, healthy and idle; the inference service
reports NOT_SERVING with what to do, and the cases that arrive wait for the set."""

from __future__ import annotations

from atlasloop.common import layout
from atlasloop.common.errors import NotReady
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.readiness import ReadinessCheck

FIRST_SET = (
    "no model set is current yet: import the first one (atlasloop models import, then atlasloop models set "
    "--current; deploy/README.md, 'The first model set'); cases wait for it"
)


def model_set_check(store: ObjectStore) -> ReadinessCheck:
    """Ready once a model set is current (the registry's pointer exists in the bucket)."""

    def probe() -> None:
        if not store.exists(layout.CURRENT_MODEL_SET):
            raise NotReady(FIRST_SET)

    return ReadinessCheck("model-set", probe)
