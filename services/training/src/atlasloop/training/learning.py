"""One member's training as the recipe describes it: examples, crops, augmentation, the loss and
the epochs. Plain PyTorch, so it runs the same inside a Ray Train worker and in a unit test."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from atlasloop.imaging.labels import NUM_CLASSES
from atlasloop.training.recipe import Recipe


@dataclass
class Example:
    """One labelled case on the model grid: image in [0, 1] and label ids."""

    case_id: str
    label_version: str
    image: np.ndarray  # float16 or float32 (x, y, z); crops are float32
    labels: np.ndarray  # uint8 (x, y, z)
    # Where a person verified the label: bool (x, y, z) for every class, or (classes, x, y, z) per
    # class; None: everywhere (an imported original, a full read). Elsewhere the label is the
    # ensemble's own, and the loss ignores it.
    verified: np.ndarray | None = None


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z) label ids -> (B, C, X, Y, Z) float targets."""
    return torch.nn.functional.one_hot(labels.long(), NUM_CLASSES).permute(0, 4, 1, 2, 3).float()


def dice_bce_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Dice over the organ channels plus BCE over all channels, on per-channel sigmoids;
    ``weight`` in {0, 1}, (B, X, Y, Z) for every class or (B, C, X, Y, Z) per class: only those
    voxels count (the verified ones)."""
    target = one_hot(labels)
    if weight is None:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    else:
        w = (weight[:, None] if weight.dim() == 4 else weight).expand_as(logits)
        per_voxel = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        bce = (per_voxel * w).sum() / w.sum().clamp(min=1)
    probs = torch.sigmoid(logits[:, 1:])
    organs = target[:, 1:]
    if weight is not None:
        probs, organs = probs * w[:, 1:], organs * w[:, 1:]
    dims = (0, 2, 3, 4)
    intersection = (probs * organs).sum(dims)
    denominator = probs.sum(dims) + organs.sum(dims)
    dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
    present = organs.sum(dims) > 0  # Dice of an organ absent from the batch is noise; BCE covers it
    return bce + ((1 - dice) * present).sum() / present.sum().clamp(min=1)


def _centre(rng: np.random.Generator, example: Example, foreground_fraction: float, partial: str) -> np.ndarray:
    shape = np.array(example.labels.shape)
    if partial == "masked" and example.verified is not None and example.verified.any():
        looked = example.verified if example.verified.ndim == 3 else example.verified[1:].any(axis=0)
        voxels = np.argwhere(looked)  # a crop where a person looked
        return voxels[rng.integers(len(voxels))]
    if rng.random() < foreground_fraction:
        present = np.unique(example.labels)
        present = present[present > 0]
        if present.size:
            organ = rng.choice(present)
            voxels = np.argwhere(example.labels == organ)
            return voxels[rng.integers(len(voxels))]
    return np.array([rng.integers(s) for s in shape])


def crop(example: Example, centre: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size``-cube around ``centre``, inside the volume where it fits, zero-padded where not;
    with its verified mask (padding is verified background)."""
    image = np.zeros((size,) * 3, np.float32)
    labels = np.zeros((size,) * 3, np.uint8)
    lead = () if example.verified is None or example.verified.ndim == 3 else example.verified.shape[:1]
    verified = np.ones(lead + (size,) * 3, np.float32)
    src, dst = [], []
    for c, extent in zip(centre, example.labels.shape, strict=True):
        start = int(np.clip(c - size // 2, 0, max(extent - size, 0)))
        stop = min(start + size, extent)
        src.append(slice(start, stop))
        dst.append(slice(0, stop - start))
    image[tuple(dst)] = example.image[tuple(src)]
    labels[tuple(dst)] = example.labels[tuple(src)]
    if example.verified is not None:
        head = (slice(None),) * len(lead)
        verified[head + tuple(dst)] = example.verified[head + tuple(src)]
    return image, labels, verified


def augment(
    rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, recipe: Recipe, verified: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for axis in recipe.flip_axes:
        if rng.random() < 0.5:
            image, labels = np.flip(image, axis), np.flip(labels, axis)
            verified = np.flip(verified, axis + verified.ndim - 3)
    if recipe.intensity_jitter:
        j = recipe.intensity_jitter
        image = image * (1 + rng.uniform(-j, j)) + rng.uniform(-j, j)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(labels), np.ascontiguousarray(verified)


class Sampler:
    """Draws augmented crops: revised examples mixed with replay, reproducibly from a seed."""

    def __init__(self, revised: Sequence[Example], replay: Sequence[Example], recipe: Recipe, seed: int) -> None:
        if not revised and not replay:
            raise ValueError("no training examples")
        self.revised, self.replay, self.recipe = list(revised), list(replay), recipe
        self.rng = np.random.default_rng(seed)

    def _example(self) -> Example:
        use_replay = not self.revised or (self.replay and self.rng.random() < self.recipe.replay_fraction)
        pool = self.replay if use_replay else self.revised
        return pool[self.rng.integers(len(pool))]

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Images (B, 1, X, Y, Z), labels (B, X, Y, Z) and, when the recipe masks the loss and a
        crop is not verified everywhere, the verified mask ((B, X, Y, Z), or (B, C, X, Y, Z) when
        any example is verified per class); else None."""
        images, labels, masks = [], [], []
        for _ in range(self.recipe.batch_size):
            example = self._example()
            centre = _centre(self.rng, example, self.recipe.foreground_fraction, self.recipe.partial_labels)
            image, label, verified = crop(example, centre, self.recipe.crop)
            image, label, verified = augment(self.rng, image, label, self.recipe, verified)
            images.append(image)
            labels.append(label)
            masks.append(verified)
        mask = None
        if self.recipe.partial_labels == "masked" and any(not m.all() for m in masks):
            shape = max((m.shape for m in masks), key=len)  # per-class masks win; whole masks broadcast
            mask = torch.from_numpy(np.stack([np.broadcast_to(m, shape) for m in masks]).astype(np.float32))
        return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(labels)), mask


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and nothing is published."""


def first_output(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """DynUNet returns deep-supervision heads in training mode when asked; keep the full-size one."""
    return output if isinstance(output, torch.Tensor) else output[0]


def train_epochs(
    module: nn.Module,
    sampler: Sampler,
    recipe: Recipe,
    on_epoch: Callable[[int, float], None] | None = None,
    device: torch.device | None = None,
    learning_rate: float | None = None,
) -> list[float]:
    """Train ``module`` in place; returns the mean loss of each epoch. Raises Diverged on NaN/inf.
    ``learning_rate``: the member's own (``Recipe.learning_rate_of``); the recipe's when None."""
    device = device or torch.device("cpu")
    module.to(device).train()
    lr = recipe.learning_rate if learning_rate is None else learning_rate
    optimiser = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=recipe.weight_decay)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    losses = []
    for epoch in range(1, recipe.epochs + 1):
        total = 0.0
        for _ in range(recipe.steps_per_epoch):
            images, labels, mask = sampler.batch()
            images, labels = images.to(device), labels.to(device)
            mask = None if mask is None else mask.to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                loss = dice_bce_loss(first_output(module(images)).float(), labels, mask)
            if not math.isfinite(loss.item()):
                raise Diverged(f"loss is {loss.item()} at epoch {epoch}; stopping")
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            total += loss.item()
        losses.append(total / recipe.steps_per_epoch)
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    module.eval()
    return losses
