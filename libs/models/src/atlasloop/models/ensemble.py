"""One case through the ensemble: preprocessing, sliding-window inference per member, compact
outputs, the pseudo-label on the native grid.

Per member: MONAI ``sliding_window_inference`` (Gaussian blending, ``overlap`` and
``sw_batch_size`` from the configuration; mixed precision on GPU), sigmoid per organ channel. Each
member's output is stored as the ensemble rule says (``atlasloop.imaging.ensemble_rule``): uint8
crops of its masked soft map and of its entropy term per organ, so the dense members x organs x
voxels float tensor never exists. For the mean, each member also keeps its raw probabilities
inside the box where they exceed ``NEGLIGIBLE``. ``combine`` averages the members (in the order
given) and applies the pseudo-label rule. The Serve deployments, the local predictor and the
training gate all run these functions.

An imported member (``model.runtime``: an nnU-Net results folder or a MONAI bundle) runs on the
native CT instead, with its own framework's preprocessing; its organ probabilities are then
resampled (linear) onto the same model grid, so the rest is the same for every member. It needs
the native CT and the grid (``native``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from atlasloop.imaging.compact import Cropped, EnsembleOutput, nonzero_box, slices
from atlasloop.imaging.ensemble_rule import add_organ, member_maps
from atlasloop.imaging.labels import ORGAN_IDS, ORGANS
from atlasloop.imaging.preprocess import GridTransform, preprocess_image, resample, to_native
from atlasloop.imaging.volume import Volume
from atlasloop.models.records import LoadedModel, shared_preprocess

NEGLIGIBLE = 1e-3  # probabilities below this are left out of a member's raw crop for the mean


@dataclass(frozen=True)
class InferenceConfig:
    overlap: float = 0.5  # the reference used 0.75; configurable (docs/adr/0003-sliding-window-overlap.md)
    sw_batch_size: int = 2
    device: str = "cpu"
    # test-time mirroring: the logits averaged over the input flipped along every subset of these
    # axes (nnU-Net's default is all three: 8 passes); () = one pass
    mirror_axes: tuple[int, ...] = ()
    calibrated: bool = True  # apply the member's fitted temperatures, where it has them


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` (the empty one first): the flips test-time mirroring averages."""
    if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"mirror axes must be distinct spatial axes 0, 1, 2 (got {tuple(axes)})")
    return [tuple(a for i, a in enumerate(axes) if mask >> i & 1) for mask in range(1 << len(axes))]


@dataclass
class MemberOutput:
    """One member's stored maps and raw crops on the model grid."""

    member: str
    soft: dict[str, Cropped] = field(default_factory=dict)  # organ -> uint8, as the rule stores it
    entropy: dict[str, Cropped] = field(default_factory=dict)  # organ -> uint8
    raw: dict[str, Cropped] = field(default_factory=dict)  # organ -> float32 above NEGLIGIBLE
    seconds: float = 0.0


@dataclass
class Prediction:
    output: EnsembleOutput  # compact, on the cropped model grid
    labels: Volume  # pseudo-label map on the native grid


def member_logits(model: LoadedModel, image: np.ndarray, cfg: InferenceConfig) -> torch.Tensor:
    """Logits (channels, x, y, z) of one member on the model grid, averaged over the mirrored
    passes when ``cfg.mirror_axes`` asks for them (as nnU-Net averages its mirrored logits)."""
    device = torch.device(cfg.device)
    module = model.module.to(device)
    patch = model.config.patch
    x = torch.from_numpy(image)[None, None].to(device)
    flips = mirror_sets(cfg.mirror_axes)
    total: torch.Tensor | None = None
    with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for axes in flips:
            dims = [a + 2 for a in axes]  # (batch, channel, x, y, z)
            logits = cast(
                torch.Tensor,
                sliding_window_inference(
                    torch.flip(x, dims) if dims else x,
                    (patch, patch, patch),
                    cfg.sw_batch_size,
                    module,
                    overlap=cfg.overlap,
                    mode="gaussian",
                    sw_device=device,
                    device=torch.device("cpu"),
                ),
            )
            logits = (torch.flip(logits, dims) if dims else logits)[0].float()
            total = logits if total is None else total + logits
    assert total is not None  # mirror_sets always holds the unflipped pass
    return total / len(flips)


Native = tuple[Volume, GridTransform]  # the CT as stored, and where the model grid lies on it


def imported_probabilities(model: LoadedModel, native: Native | None, cfg: InferenceConfig) -> torch.Tensor:
    """An imported member's organ probabilities (channels, x, y, z) on the model grid: its own
    framework's prediction on the native CT (nnU-Net's, a MONAI bundle's), its classes summed per
    organ, resampled linearly."""
    if native is None:
        raise ValueError(f"{model.name} is an imported member: it predicts from the native CT, which was not given")
    ct, grid = native
    out = np.zeros((len(ORGANS) + 1, *grid.cropped_shape), np.float32)
    for organ, p in model.runtime.organ_probabilities(ct, cfg.overlap, cfg.device).items():
        out[ORGAN_IDS[organ]] = resample(p, ct.affine, grid.cropped_shape, grid.cropped_affine, order=1)
    return torch.from_numpy(out)


def member_probabilities(
    model: LoadedModel, image: np.ndarray, cfg: InferenceConfig, native: Native | None = None
) -> torch.Tensor:
    """Sigmoid probabilities (channels, x, y, z) of one member on the model grid, each organ's
    logits divided by the member's fitted temperature when it has one (``cfg.calibrated``)."""
    if model.runtime is not None:
        return imported_probabilities(model, native, cfg)
    logits = member_logits(model, image, cfg)
    temperatures = model.manifest.temperatures if cfg.calibrated else {}
    for label, organ in ORGANS.items():
        if organ in temperatures:
            logits[label] /= float(temperatures[organ])
    return torch.sigmoid(logits)


def run_member(
    model: LoadedModel,
    image: np.ndarray,
    cfg: InferenceConfig,
    negligible: float = NEGLIGIBLE,
    native: Native | None = None,
) -> MemberOutput:
    """One member on one preprocessed image (an imported member on ``native``); ``negligible=0``
    keeps every probability for the mean."""
    started = time.perf_counter()
    probs = member_probabilities(model, image, cfg, native).numpy()
    out = MemberOutput(model.name)
    for label, organ in ORGANS.items():
        p = probs[label]
        out.soft[organ], out.entropy[organ] = member_maps(p)
        box = nonzero_box(p > negligible)
        out.raw[organ] = Cropped(box, p[slices(box)].astype(np.float32) if box else np.zeros((0, 0, 0), np.float32))
    out.seconds = time.perf_counter() - started
    return out


def combine(
    shape: tuple[int, int, int], affine: np.ndarray, members: Sequence[MemberOutput]
) -> tuple[EnsembleOutput, np.ndarray]:
    """The compact ensemble output and the pseudo-label map, both on the model grid."""
    output = EnsembleOutput(shape, affine, [m.member for m in members])
    labels = np.zeros(shape, np.uint8)
    for label, organ in ORGANS.items():
        mean = np.zeros(shape, np.float32)
        for m in members:
            output.soft.setdefault(m.member, {})[organ] = m.soft[organ]
            output.entropy.setdefault(m.member, {})[organ] = m.entropy[organ]
            raw = m.raw[organ]
            if raw.box is not None:
                mean[slices(raw.box)] += raw.data / len(members)
        output.pseudo[organ] = Cropped.of(add_organ(labels, label, mean))
    return output, labels


def ensemble_labels(members: Sequence[LoadedModel], image: np.ndarray, cfg: InferenceConfig) -> np.ndarray:
    """The ensemble's label map for one preprocessed image, on the model grid, from the exact mean
    (the gate scores it against human labels)."""
    outputs = [run_member(m, image, cfg, negligible=0.0) for m in members]
    return combine(image.shape, np.eye(4), outputs)[1]


def predict(
    ct: Volume,
    members: Sequence[LoadedModel],
    cfg: InferenceConfig | None = None,
    on_member: Callable[[LoadedModel], None] | None = None,
) -> Prediction:
    """The whole prediction of one CT in this process (the Serve deployments split it by member)."""
    cfg = cfg or InferenceConfig()
    pre = preprocess_image(ct, shared_preprocess([m.manifest for m in members]))
    outputs = []
    for model in members:
        outputs.append(run_member(model, pre.image, cfg, native=(ct, pre.grid)))
        if on_member is not None:
            on_member(model)
    output, labels = combine(pre.image.shape, pre.grid.cropped_affine, outputs)
    return Prediction(output, to_native(labels, pre.grid, order=0))
