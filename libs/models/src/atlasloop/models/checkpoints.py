"""Checkpoint files: state dicts to bytes and back, and loading one strictly into an architecture.

Accepts what PyTorch and MONAI write: a bare state dict, or a dict holding one under a usual key
(``state_dict``, ``model``, ``net``, ``network_weights``), with or without DataParallel/DDP's
``module.`` prefix. Loading is ``weights_only`` (no pickled code runs) and strict (every tensor must
fit the configured network).
"""

from __future__ import annotations

import io

import torch
from torch import nn

from atlasloop.common.errors import InvalidInput
from atlasloop.models.architectures import ArchitectureConfig, build

WRAPPING_KEYS = ("state_dict", "model", "net", "network_weights")


def state_dict_bytes(module_or_state: nn.Module | dict) -> bytes:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def read_state_dict(data: bytes, source: str) -> dict[str, torch.Tensor]:
    """A plain PyTorch or MONAI checkpoint: a state dict, or a dict holding one under a usual key."""
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise InvalidInput(f"{source}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    for key in WRAPPING_KEYS:
        if isinstance(loaded, dict) and key in loaded and isinstance(loaded[key], dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InvalidInput(f"{source}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}  # DataParallel/DDP prefixes


def load_into(cfg: ArchitectureConfig, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The network of ``cfg`` with ``state`` loaded strictly, in eval mode."""
    module = build(cfg)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise InvalidInput(f"{source}: tensors do not fit {cfg.architecture}/{cfg.size}: {' '.join(first)}") from None
    return module.eval()


def load_checkpoint(cfg: ArchitectureConfig, data: bytes, source: str) -> nn.Module:
    return load_into(cfg, read_state_dict(data, source), source)
