"""Every object-store key AtlasLoop uses, written once (ARCHITECTURE.md, "Object-store layout").

```
cases/<case>/ct.nii.gz                               canonical CT (storage)
cases/<case>/meta.json                               the case's record, with the trace context of
                                                     its import; written last (storage)
cases/<case>/labels/<version>.nii.gz | .json         a label map and its provenance (storage)
cases/<case>/predictions/<set>/ensemble.npz          compact member outputs (inference)
cases/<case>/predictions/<set>/published.json        the prediction was stored and announced
cases/<case>/attention/<set>/<mode>/attention.npz    attention maps of one scoring mode (scoring)
cases/<case>/attention/<set>/<mode>/scores.json      priorities, organ scores, regions
cases/<case>/attention/<set>/published               case.scored was announced
cases/<case>/exports/<version or attention>/...      files for desktop viewers (rendering)
scores/<set>/<mode>/<case>.json                      the ranking index ProposeRound lists
staging/<upload>[.json]                              uploads not yet imported (storage)
index/content/<sha256>                               content hash -> case, for duplicates
models/<architecture>/<version>/weights.pt | manifest.json     the model registry
model-sets/<version>.json, model-sets/current.json   ensembles and the served one
training/ledger.json, training/held-out.json         what training has consumed and holds out
training/runs/<run>/run.json | candidates/<arch>.pt  run records and trained candidates
project/label-schema.json                            the project's label schema, fixed at first start
```

Ids are validated by their owners where they enter (``atlasloop.common.ids``), and again here:
every segment a key is built from must be one safe name (letters, digits, '.', '_', '-'; no '..',
no '/'), so no service can build a key outside its prefix from an id it forgot to check; a bad
one is InvalidInput naming what it is.
"""

from __future__ import annotations

import re

from atlasloop.common.errors import InvalidInput

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def segment(what: str, value: str) -> str:
    """``value`` when it is one safe key segment; InvalidInput naming ``what`` otherwise."""
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidInput(
            f"{what} {shown!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return value


CASES = "cases/"
SCORES = "scores/"
STAGING = "staging/"
CONTENT_INDEX = "index/content/"
MODELS = "models/"
MODEL_SETS = "model-sets/"
CURRENT_MODEL_SET = "model-sets/current.json"
TRAINING_RUNS = "training/runs/"
LEDGER = "training/ledger.json"
HELD_OUT = "training/held-out.json"


# ---- cases ----


LABEL_SCHEMA_KEY = "project/label-schema.json"


def case_prefix(case_id: str) -> str:
    return f"{CASES}{segment('case id', case_id)}/"


def case_id_of(prefix: str) -> str:
    """The case id of a key or prefix under ``cases/``."""
    return prefix.removeprefix(CASES).split("/", 1)[0]


def ct_key(case_id: str) -> str:
    return case_prefix(case_id) + "ct.nii.gz"


def display_ct_key(case_id: str) -> str:
    """The CT's display-ready copy (``atlasloop.imaging.display_copy``), beside ``ct.nii.gz``."""
    return case_prefix(case_id) + "ct.display"


def meta_key(case_id: str) -> str:
    return case_prefix(case_id) + "meta.json"


def labels_prefix(case_id: str) -> str:
    return case_prefix(case_id) + "labels/"


def label_key(case_id: str, version: str) -> str:
    return f"{labels_prefix(case_id)}{segment('label version', version)}.nii.gz"


def display_label_key(case_id: str, version: str) -> str:
    """A label version's display-ready copy (``atlasloop.imaging.display_copy``), beside its NIfTI."""
    return f"{labels_prefix(case_id)}{segment('label version', version)}.display"


def label_meta_key(case_id: str, version: str) -> str:
    return f"{labels_prefix(case_id)}{segment('label version', version)}.json"


def seg_key(case_id: str, version: str) -> str:
    """A label version as DICOM SEG (cases imported from DICOM; built on first download)."""
    return f"{case_prefix(case_id)}exports/{segment('label version', version)}.seg.dcm"


def seg_sent_key(case_id: str, version: str) -> str:
    """The record that a label version's SEG reached the PACS (sent once)."""
    return f"{case_prefix(case_id)}exports/{segment('label version', version)}.sent.json"


# ---- predictions (inference) and attention (scoring) ----


def predictions_prefix(case_id: str) -> str:
    """Every model set's predictions of a case: one sub-prefix per set."""
    return case_prefix(case_id) + "predictions/"


def prediction_prefix(case_id: str, model_set: str) -> str:
    return f"{predictions_prefix(case_id)}{segment('model set', model_set)}/"


def ensemble_key(case_id: str, model_set: str) -> str:
    return prediction_prefix(case_id, model_set) + "ensemble.npz"


def prediction_record_key(case_id: str, model_set: str) -> str:
    """Written last: the outputs are durable and ``case.predicted`` was published."""
    return prediction_prefix(case_id, model_set) + "published.json"


def attention_sets_prefix(case_id: str) -> str:
    """Every model set's attention of a case: one sub-prefix per set."""
    return case_prefix(case_id) + "attention/"


def attention_prefix(case_id: str, model_set: str, mode: str) -> str:
    return f"{attention_sets_prefix(case_id)}{segment('model set', model_set)}/{segment('scoring mode', mode)}/"


def attention_key(case_id: str, model_set: str, mode: str) -> str:
    return attention_prefix(case_id, model_set, mode) + "attention.npz"


def scores_key(case_id: str, model_set: str, mode: str) -> str:
    return attention_prefix(case_id, model_set, mode) + "scores.json"


def scored_marker_key(case_id: str, model_set: str) -> str:
    """Written after ``case.scored`` was published: a redelivered ``case.predicted`` stops here."""
    return f"{attention_sets_prefix(case_id)}{segment('model set', model_set)}/published"


def score_index_prefix(model_set: str, mode: str) -> str:
    return f"{SCORES}{segment('model set', model_set)}/{segment('scoring mode', mode)}/"


def score_index_key(model_set: str, mode: str, case_id: str) -> str:
    """One small JSON per scored case, listed by ProposeRound."""
    return f"{score_index_prefix(model_set, mode)}{segment('case id', case_id)}.json"


def export_prefix(case_id: str, label_version: str) -> str:
    return f"{case_prefix(case_id)}exports/{segment('label version', label_version or 'attention')}/"


def sub_names(prefix: str, listed: list[str]) -> list[str]:
    """The names one level below ``prefix`` in a listing of sub-prefixes, sorted."""
    return sorted(p.removeprefix(prefix).rstrip("/") for p in listed)


# ---- uploads ----


def staging_key(upload_id: str) -> str:
    return f"{STAGING}{segment('upload id', upload_id)}"


def staging_meta_key(upload_id: str) -> str:
    return f"{STAGING}{segment('upload id', upload_id)}.json"


def upload_receipt_key(upload_id: str) -> str:
    """What an upload became (a case, a label version): written before the objects it makes, so
    that a request retried after a crash or a lost answer finishes or returns the same result."""
    return f"{STAGING}{segment('upload id', upload_id)}.receipt.json"


def content_index_key(content_sha256: str) -> str:
    return f"{CONTENT_INDEX}{segment('content hash', content_sha256)}"


# ---- the model registry ----


def model_prefix(architecture: str, version: str) -> str:
    return f"{MODELS}{segment('architecture', architecture)}/{segment('model version', version)}/"


def weights_key(architecture: str, version: str) -> str:
    return model_prefix(architecture, version) + "weights.pt"


def manifest_key(architecture: str, version: str) -> str:
    return model_prefix(architecture, version) + "manifest.json"


def model_set_key(version: str) -> str:
    return f"{MODEL_SETS}{segment('model set', version)}.json"


# ---- training ----


def run_prefix(run_id: str) -> str:
    return f"{TRAINING_RUNS}{segment('run id', run_id)}/"


def run_key(run_id: str) -> str:
    return run_prefix(run_id) + "run.json"


def run_id_of(key: str) -> str:
    """The run id of a key under ``training/runs/``."""
    return key.removeprefix(TRAINING_RUNS).split("/", 1)[0]


def candidate_key(run_id: str, architecture: str) -> str:
    return f"{run_prefix(run_id)}candidates/{segment('architecture', architecture)}.pt"
