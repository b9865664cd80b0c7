"""Segmentation architectures from MONAI, selected by name and size.

Each outputs one sigmoid channel per schema label (background included, as the reference's
per-organ heads do; channel c is label id c). ``paper`` sizes are what a GPU cluster runs (the
reference used Swin UNETR, an nnU-Net and a U-Net); ``tiny`` sizes are what tests and CPU demos
run. The configuration is part of every model manifest, so a checkpoint only loads into the
network it was trained as.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.labels import NUM_CLASSES

if TYPE_CHECKING:  # torch is needed to build and run networks, not to read their records
    from torch import nn


@dataclass(frozen=True)
class ArchitectureConfig:
    architecture: str
    size: str
    patch: int  # cubic sliding-window patch, in voxels of the model grid
    kwargs: dict

    def as_json(self) -> dict:
        return asdict(self)


def _swin(kw: dict) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=1, out_channels=NUM_CLASSES, **kw)


def _dynunet(kw: dict) -> nn.Module:
    from monai.networks.nets import DynUNet

    return DynUNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, **kw)


def _unet(kw: dict) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, **kw)


def _segresnet(kw: dict) -> nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, **kw)


BUILDERS: dict[str, Callable[[dict], nn.Module]] = {
    "swin_unetr": _swin,
    "dynunet": _dynunet,
    "unet": _unet,
    "segresnet": _segresnet,
}
CONFIGS: dict[tuple[str, str], ArchitectureConfig] = {
    ("swin_unetr", "paper"): ArchitectureConfig(
        "swin_unetr", "paper", 96, {"feature_size": 48, "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24]}
    ),
    ("swin_unetr", "tiny"): ArchitectureConfig(
        "swin_unetr", "tiny", 64, {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4]}
    ),
    ("dynunet", "paper"): ArchitectureConfig(
        "dynunet",
        "paper",
        96,
        {  # nnU-Net 3d_fullres-like
            "kernel_size": [3, 3, 3, 3, 3, 3],
            "strides": [1, 2, 2, 2, 2, 2],
            "upsample_kernel_size": [2, 2, 2, 2, 2],
            "filters": [32, 64, 128, 256, 320, 320],
            "res_block": False,
        },
    ),
    ("dynunet", "tiny"): ArchitectureConfig(
        "dynunet",
        "tiny",
        64,
        {
            "kernel_size": [3, 3, 3, 3],
            "strides": [1, 2, 2, 2],
            "upsample_kernel_size": [2, 2, 2],
            "filters": [8, 16, 32, 64],
        },
    ),
    ("unet", "paper"): ArchitectureConfig(
        "unet", "paper", 96, {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "num_res_units": 2}
    ),
    ("unet", "tiny"): ArchitectureConfig(
        "unet", "tiny", 64, {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}
    ),
    ("segresnet", "paper"): ArchitectureConfig(
        "segresnet", "paper", 96, {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]}
    ),
    ("segresnet", "tiny"): ArchitectureConfig(
        "segresnet", "tiny", 64, {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]}
    ),
}


def config(architecture: str, size: str) -> ArchitectureConfig:
    try:
        return CONFIGS[(architecture, size)]
    except KeyError:
        names = sorted({a for a, _ in CONFIGS})
        raise InvalidInput(
            f"unknown architecture/size {architecture}/{size}; architectures: {', '.join(names)}; sizes: tiny, paper"
        ) from None


def build(cfg: ArchitectureConfig) -> nn.Module:
    return BUILDERS[cfg.architecture](dict(cfg.kwargs))
