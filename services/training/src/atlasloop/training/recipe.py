"""The fine-tuning recipe: every number of how a run trains, as settings (no torch here; the
training itself is ``atlasloop.training.learning``).

Plain PyTorch, so it runs the same inside a Ray Train worker and in a unit test. Defaults follow
the method's fine-tuning (per-organ sigmoid heads trained with Dice + BCE, AdamW) scaled to what
tiny models on CPUs can do; every number is configuration (``TrainingSettings.recipe``).

- **Loss**: soft batch Dice over the organ channels present in the batch plus binary cross-entropy
  over every channel (background included), on one-hot targets; the two are added with equal
  weight. An organ absent from a batch has no Dice term (any prediction would score 0 there); BCE
  still penalises false positives on it.
- **Crops**: cubes of ``crop`` voxels on the models' grid (their manifest's spacing); with
  probability ``foreground_fraction`` a crop is centred on a voxel of a random organ present in
  the case (nnU-Net-style oversampling, so small organs are seen), otherwise anywhere. Volumes
  smaller than a crop are zero-padded.
- **Augmentation**: a random intensity scale and shift; flips only along ``flip_axes`` (none by
  default). The model grid is RAS-aligned, and mirroring left-right turns a left kidney into a
  right one and the spleen into the liver's side: with lateralised labels it teaches the network
  that side does not matter (TotalSegmentator trains without mirroring for the same reason).
- **Learning rate per architecture**: ``learning_rate`` times the architecture's
  ``learning_rate_scale`` (1 when it has none). Architectures learn at different rates under one
  optimiser: measured on the demo's cohort (docs/adr/0011), the tiny SegResNet at the U-Net's
  3e-3 never learned the kidneys, pancreas or gall bladder in 360 steps (two seeds; loss 0.71
  where the U-Net's was 0.22), so one member of three voted "no organ" on every case and made
  those organs look uncertain everywhere; at 1e-2 it learned them.
- **Replay**: each step draws its case from the revised labels with probability ``1 -
  replay_fraction`` and from the replay pool (original and earlier accepted labels) otherwise, so
  fine-tuning on corrections alone does not make the models forget (the method saw Dice on
  unrevised labels drop by about 10% without it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from atlasloop.models.architectures import BUILDERS


class Recipe(BaseModel):
    """How one run fine-tunes every member."""

    epochs: int = Field(default=4, ge=1, le=1000)
    steps_per_epoch: int = Field(default=10, ge=1, le=100_000)
    batch_size: int = Field(default=2, ge=1, le=64, description="Crops per step per worker.")
    crop: int = Field(default=64, ge=16, le=192, description="Cubic crop edge in voxels (96 or less for tiny).")
    learning_rate: float = Field(default=3e-4, gt=0, le=1.0)
    learning_rate_scale: dict[str, float] = Field(
        default_factory=lambda: {"segresnet": 3.0},
        description="Per architecture, a factor on learning_rate (the module docstring); others use 1.",
    )
    weight_decay: float = Field(default=1e-5, ge=0)
    foreground_fraction: float = Field(default=0.67, ge=0, le=1)
    replay_fraction: float = Field(default=0.5, ge=0, le=1)
    flip_axes: tuple[int, ...] = Field(default=(), description="Model-grid axes to mirror at random (0 = left-right).")
    intensity_jitter: float = Field(default=0.1, ge=0, le=0.5)
    partial_labels: Literal["masked", "whole"] = Field(
        default="masked",
        description="A guided revision is verified only inside the regions the annotator reviewed: "
        "'masked' trains on those voxels only, 'whole' on the whole label (the AI's outside).",
    )
    seed: int = 0

    @field_validator("learning_rate_scale")
    @classmethod
    def _known_architectures(cls, scales: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(scales) - set(BUILDERS))
        if unknown:
            raise ValueError(f"learning_rate_scale names unknown architectures {unknown}; known: {sorted(BUILDERS)}")
        bad = {name: value for name, value in scales.items() if not 0 < value <= 100}
        if bad:
            raise ValueError(f"learning_rate_scale factors must be in (0, 100], got {bad}")
        return scales

    def learning_rate_of(self, architecture: str) -> float:
        """The learning rate one member trains at."""
        return min(self.learning_rate * self.learning_rate_scale.get(architecture, 1.0), 1.0)
