"""One case through the ensemble: preprocessing, sliding-window inference per member, compact
outputs, the pseudo-label on the native grid.

Per member: MONAI ``sliding_window_inference`` (Gaussian blending, ``overlap`` and
``sw_batch_size`` from settings; mixed precision on GPU), sigmoid per organ channel. Per organ, the
member's soft map is zeroed outside its dilated largest component and quantised, and its entropy
term quantised (the reference stores both that way); only these uint8 crops are kept, organ by
organ, so the dense members x organs x voxels float tensor never exists. The ensemble mean of the
raw probabilities > 0.5, largest 26-connected component, is the pseudo-label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from atlasloop.imaging.compact import Cropped, EnsembleOutput, entropy_term, quantise
from atlasloop.imaging.components import FULL, largest_component
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.preprocess import Preprocessed, preprocess_image, to_native
from atlasloop.imaging.volume import Volume
from atlasloop.inference.registry import LoadedModel, shared_preprocess


@dataclass(frozen=True)
class InferenceConfig:
    overlap: float = 0.5  # the reference used 0.75; configurable
    sw_batch_size: int = 2
    device: str = "cpu"


@dataclass
class Prediction:
    output: EnsembleOutput  # compact, on the cropped model grid
    labels: Volume  # pseudo-label map on the native grid


def member_probabilities(model: LoadedModel, image: np.ndarray, cfg: InferenceConfig) -> torch.Tensor:
    """Sigmoid probabilities (channels, x, y, z) of one member on the model grid."""
    device = torch.device(cfg.device)
    module = model.module.to(device)
    patch = model.config.patch
    x = torch.from_numpy(image)[None, None].to(device)
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        logits = sliding_window_inference(x, (patch, patch, patch), cfg.sw_batch_size, module, overlap=cfg.overlap,
                                          mode="gaussian", sw_device=device, device=torch.device("cpu"))
    return torch.sigmoid(logits[0].float())


def predict(ct: Volume, members: Sequence[LoadedModel], cfg: InferenceConfig | None = None,
            on_member: Callable[[LoadedModel], None] | None = None) -> Prediction:
    cfg = cfg or InferenceConfig()
    pre: Preprocessed = preprocess_image(ct, shared_preprocess([m.manifest for m in members]))
    shape = pre.image.shape
    output = EnsembleOutput(shape, pre.grid.cropped_affine, [f"{m.architecture}@{m.version}" for m in members])
    mean = {organ: np.zeros(shape, np.float32) for organ in ORGANS.values()}
    for model in members:
        probs = member_probabilities(model, pre.image, cfg)
        name = f"{model.architecture}@{model.version}"
        for label, organ in ORGANS.items():
            p = probs[label].numpy()
            mean[organ] += p / len(members)
            above = p > 0.5
            keep = ndimage.binary_dilation(largest_component(above), structure=FULL) if above.any() else above
            output.soft.setdefault(name, {})[organ] = Cropped.of(quantise(np.where(keep, p, 0.0)))
            output.entropy.setdefault(name, {})[organ] = Cropped.of(quantise(entropy_term(p)))
        del probs
        if on_member is not None:
            on_member(model)
    labels = pseudo_label(mean, shape, output.pseudo)
    return Prediction(output, to_native(labels, pre.grid, order=0))


def pseudo_label(mean: Mapping[str, np.ndarray], shape: tuple[int, ...],
                 masks: dict[str, Cropped] | None = None) -> np.ndarray:
    """The ensemble's label map from its mean probabilities (see ``add_organ``). ``masks``
    collects each organ's cropped mask when given."""
    labels = np.zeros(shape, np.uint8)
    for label, organ in ORGANS.items():
        mask = add_organ(labels, label, mean[organ])
        if masks is not None:
            masks[organ] = Cropped.of(mask)
    return labels


def add_organ(labels: np.ndarray, label: int, mean: np.ndarray) -> np.ndarray:
    """Paint one organ of the pseudo-label: mean > 0.5, largest 26-connected component; where
    organs overlap the lower id (painted first) wins. One organ at a time, so a caller never needs
    every organ's float map at once. Returns the organ's mask."""
    mask = mean > 0.5
    mask = largest_component(mask) if mask.any() else mask
    labels[mask & (labels == 0)] = label
    return mask
