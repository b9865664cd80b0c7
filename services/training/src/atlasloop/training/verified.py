"""Where a person verified a revised label: the attention regions the revision was guided by.

A guided revision corrects one organ inside each attention region the annotator was shown and
leaves the rest as the ensemble labelled it. Trained on as a whole, such a label teaches the
models their own mistakes back (measured in docs/adr/0009-training-on-partial-corrections.md: the
candidates got worse on the new sites). So a revised label is verified *per class*: organ O inside
the boxes of O's regions, and nowhere else; the loss (``Recipe.partial_labels = "masked"``) and
the gate's scores count only those voxels.

The regions are the scoring service's for the model set that made the revision's parent AI label,
in the mode the annotators are shown (``TrainingSettings.verified_regions_mode``), read from where
scoring stores them. A label whose parent is not an AI label (a revision of an original, or of an
earlier human label: a full read) is verified everywhere. When the viewer records per-region
verdicts (issue #22), those replace this inference.
"""

from __future__ import annotations

import numpy as np

from atlasloop.common import layout
from atlasloop.common.errors import NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.common.storage_client import StorageClient
from atlasloop.common.v1 import common_pb2
from atlasloop.imaging.boxes import box_slices, voxel_bounds
from atlasloop.imaging.labels import NUM_CLASSES, ORGAN_IDS
from atlasloop.imaging.preprocess import GridTransform


def guiding_regions(store: ObjectStore, client: StorageClient, case_id: str, version: str, mode: str) -> list[dict]:
    """The attention regions a revision was guided by; [] when it was not guided (a full read)."""
    versions = {v.label_version: v for v in client.label_versions(case_id)}
    revised = versions.get(version)
    parent = versions.get(revised.parent_version) if revised is not None else None
    if parent is None or parent.source != common_pb2.LABEL_SOURCE_AI or not parent.model_set:
        return []
    try:
        return list(store.get_json(layout.scores_key(case_id, parent.model_set, mode))["regions"])
    except NotFound:
        return []


def verified_mask(regions: list[dict], grid: GridTransform) -> np.ndarray | None:
    """Per class (classes, x, y, z) on the cropped model grid: organ O inside its regions' boxes;
    None (verified everywhere) without regions."""
    if not regions:
        return None
    mask = np.zeros((NUM_CLASSES, *grid.cropped_shape), bool)
    for region in regions:
        label = ORGAN_IDS.get(str(region.get("organ")))
        if label is not None:
            lo, hi = voxel_bounds(region["min_mm"], region["max_mm"], grid.cropped_affine, grid.cropped_shape)
            mask[label][box_slices(lo, hi)] = True
    return mask
