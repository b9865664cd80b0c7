"""Which cases a newly published model set predicts again.

A case is re-predicted while every label it has was made by the ensemble (or it has none yet):
human revisions and labels imported with the case are never replaced by a pseudo-label. Predictions
are idempotent per (case, model set), so a redelivered ``model.published`` computes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from atlasloop.common.storage_client import StorageClient
from atlasloop.common.v1 import common_pb2

log = logging.getLogger(__name__)
KEEP = {common_pb2.LABEL_SOURCE_HUMAN, common_pb2.LABEL_SOURCE_ORIGINAL}


def ai_labelled_cases(client: StorageClient) -> Iterator[str]:
    """Case ids whose labels are still AI-made, in the storage service's order."""
    for case_id in client.case_ids():
        if not any(v.source in KEEP for v in client.label_versions(case_id)):
            yield case_id


def repredict(client: StorageClient, predict: Callable[[str], object]) -> int:
    """Predict every AI-labelled case with the served set; returns how many were sent."""
    count = 0
    for case_id in ai_labelled_cases(client):
        predict(case_id)
        count += 1
    log.info("re-predicted AI-labelled cases", extra={"cases": count})
    return count
