"""The bootstrap model set: what a fresh installation serves before anything is trained.

The inference service is NOT_SERVING until a model set is current (``atlasloop.inference.first_set``),
and a new workstation has none. ``bootstrap_set`` registers three tiny, untrained networks (U-Net,
DynUNet, SegResNet; seeded, so every fresh stack starts from the same weights) on a ``spacing_mm``
grid, labelled ``untrained`` in their provenance, and makes them current. Training (which keeps their grid) or
``atlasloop models import`` replaces them. A registry that already has a current set is left alone.
"""

from __future__ import annotations

import torch

from atlasloop.common.errors import NotFound
from atlasloop.imaging.preprocess import PreprocessConfig
from atlasloop.models.architectures import build, config
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.registry import ModelRegistry

BOOTSTRAP = "bootstrap"
ARCHITECTURES = ("unet", "dynunet", "segresnet")


def bootstrap_set(registry: ModelRegistry, spacing_mm: float = 1.5) -> str:
    """The current model set's version, after creating the bootstrap set when there is none."""
    try:
        return registry.current()
    except NotFound:
        pass
    members = []
    for seed, architecture in enumerate(ARCHITECTURES):
        torch.manual_seed(seed)
        weights = state_dict_bytes(build(config(architecture, "tiny")))
        registry.register(
            architecture,
            "tiny",
            weights,
            {"bootstrap": "untrained; replace by training"},
            version=BOOTSTRAP,
            preprocess=PreprocessConfig(spacing_mm=spacing_mm),
        )
        members.append((architecture, BOOTSTRAP))
    return registry.create_set(members, make_current=True, version=BOOTSTRAP).version
