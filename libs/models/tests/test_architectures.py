"""Every architecture builds in both sizes; tiny ones run and give one channel per label."""

from __future__ import annotations

import pytest
import torch

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.labels import NUM_CLASSES
from atlasloop.models.architectures import CONFIGS, build, config


@pytest.mark.parametrize(("architecture", "size"), sorted(CONFIGS))
def test_builds(architecture, size):
    module = build(config(architecture, size))
    assert sum(p.numel() for p in module.parameters()) > 0


@pytest.mark.parametrize("architecture", ["unet", "dynunet", "segresnet", "swin_unetr"])
def test_tiny_forward_gives_a_channel_per_label(architecture):
    torch.manual_seed(0)
    module = build(config(architecture, "tiny")).eval()
    with torch.no_grad():
        out = module(torch.zeros(1, 1, 64, 64, 64))
    assert out.shape == (1, NUM_CLASSES, 64, 64, 64)


def test_unknown_architecture_refused():
    with pytest.raises(InvalidInput, match="unknown architecture"):
        config("transformer9000", "tiny")
