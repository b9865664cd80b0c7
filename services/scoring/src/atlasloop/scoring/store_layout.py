"""Where scoring reads predictions and writes attention (the object-store layout's part for it)."""

from __future__ import annotations


def prediction_key(case_id: str, model_set: str) -> str:
    return f"cases/{case_id}/predictions/{model_set}/ensemble.npz"


def predictions_prefix(case_id: str) -> str:
    return f"cases/{case_id}/predictions/"


def attention_prefix(case_id: str, model_set: str, mode: str) -> str:
    return f"cases/{case_id}/attention/{model_set}/{mode}/"


def score_index_key(model_set: str, mode: str, case_id: str) -> str:
    """One small JSON per scored case, listed by ProposeRound."""
    return f"scores/{model_set}/{mode}/{case_id}.json"


def published_marker_key(case_id: str, model_set: str) -> str:
    return f"cases/{case_id}/attention/{model_set}/published"
