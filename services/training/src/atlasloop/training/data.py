"""Labelled cases as training examples: the CT and one label version, read through the storage
service (checksums verified on the way) and brought onto the model grid as inference sees it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from atlasloop.common.errors import AtlasError, InvalidInput, NotFound
from atlasloop.common.storage_client import StorageClient
from atlasloop.imaging.labels import validate_label_map
from atlasloop.imaging.preprocess import PreprocessConfig, labels_to_model, preprocess_image
from atlasloop.training.learning import Example
from atlasloop.training.ledger import LabelRef
from atlasloop.training.verified import verified_mask

RegionsOf = Callable[[LabelRef], list[dict]]


def load_example(
    client: StorageClient, ref: LabelRef, preprocess: PreprocessConfig, regions_of: RegionsOf | None = None
) -> Example:
    """One example on the grid of the models it trains (``preprocess``: their spacing and window);
    a version that cannot be read or does not fit its CT is refused by name. ``regions_of``: the
    attention regions that guided the label's revision, verified per class (``verified``)."""
    where = f"case {ref.case_id} label version {ref.label_version}"
    try:
        ct = client.load_ct(ref.case_id)
        labels = client.load_labels(ref.case_id, ref.label_version)
    except AtlasError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    if labels.shape != ct.shape or not np.allclose(labels.affine, ct.affine, atol=1e-3):
        raise InvalidInput(f"{where}: the label map is not on the CT's grid")
    validate_label_map(labels.array, where)  # every id one of the project's schema
    pre = preprocess_image(ct, preprocess)
    return Example(
        ref.case_id,
        ref.label_version,
        pre.image.astype(np.float16),  # half the memory
        labels_to_model(labels, pre.grid),
        verified_mask(regions_of(ref), pre.grid) if regions_of is not None else None,
    )


def load_usable(
    client: StorageClient, refs: Iterable[LabelRef], preprocess: PreprocessConfig, regions_of: RegionsOf | None = None
) -> tuple[list[Example], dict[LabelRef, str]]:
    """The examples that load, and why each of the others did not (a label that cannot be read or
    does not fit its CT). A dependency that does not answer still fails the whole call."""
    examples, refused = [], {}
    for ref in refs:
        try:
            examples.append(load_example(client, ref, preprocess, regions_of))
        except (InvalidInput, NotFound) as exc:
            refused[ref] = str(exc)
    return examples, refused
