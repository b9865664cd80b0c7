"""Typed records of the model registry: a model version's manifest, a model set, a loaded model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.preprocess import PreprocessConfig
from atlasloop.models.architectures import ArchitectureConfig

if TYPE_CHECKING:  # torch is needed to build and run networks, not to read their records
    from torch import nn

SCHEMA: dict[str, str] = {str(k): v for k, v in ORGANS.items()}


@dataclass(frozen=True)
class Manifest:
    """``models/<architecture>/<version>/manifest.json``."""

    architecture: str
    version: str
    config: dict[str, Any]  # ArchitectureConfig.as_json()
    label_schema: dict[str, str]
    spacing_mm: float
    hu_window: tuple[float, float]
    weights_sha256: str
    weights_bytes: int
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    # organ -> temperature T of its sigmoid (atlasloop.models.calibration), fitted on approved
    # revisions when the version was published; absent organs are not rescaled (T = 1)
    temperatures: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> str:
        return str(self.config["size"])

    @property
    def kind(self) -> str:
        """``monai`` (an architecture of this code, by name and size) or ``nnunet`` (an imported
        nnU-Net v2 results folder, ``atlasloop.models.nnunet``) or ``monai-bundle`` (an imported
        MONAI bundle, ``atlasloop.models.monai_bundle``)."""
        return str(self.config.get("kind", "monai"))

    @property
    def imported(self) -> bool:
        """Predicts with its own framework's pipeline from the native CT (not this code's networks)."""
        return self.kind != "monai"

    @property
    def preprocess(self) -> PreprocessConfig:
        """The input grid and HU window the model was trained on."""
        hu_min, hu_max = self.hu_window
        return PreprocessConfig(spacing_mm=float(self.spacing_mm), hu_min=float(hu_min), hu_max=float(hu_max))

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"hu_window": list(self.hu_window)}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Manifest:
        return cls(**(document | {"hu_window": tuple(document["hu_window"])}))


@dataclass(frozen=True)
class MemberRef:
    architecture: str
    version: str

    @property
    def name(self) -> str:
        return f"{self.architecture}@{self.version}"


@dataclass(frozen=True)
class ModelSet:
    """``model-sets/<version>.json``: the members of one ensemble."""

    version: str
    members: tuple[MemberRef, ...]
    created_at: str = ""
    # organ -> offset the improved scoring adds to the set's expected Dice (atlasloop.method.improved),
    # fitted on the held-out cases of the run that published the set; empty for other sets
    expected_dice_offsets: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "members": [asdict(m) for m in self.members],
            "created_at": self.created_at,
            "expected_dice_offsets": dict(self.expected_dice_offsets),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ModelSet:
        return cls(
            str(document["version"]),
            tuple(MemberRef(**m) for m in document["members"]),
            str(document.get("created_at", "")),
            {str(k): float(v) for k, v in (document.get("expected_dice_offsets") or {}).items()},
        )


@dataclass
class LoadedModel:
    """A verified model version, its network built and loaded."""

    architecture: str
    version: str
    config: ArchitectureConfig
    module: nn.Module
    manifest: Manifest
    # an imported nnU-Net member's predictor (atlasloop.models.nnunet.NnunetRuntime), which runs on
    # the native CT with nnU-Net's own preprocessing; None for the MONAI members
    runtime: Any = None

    @property
    def name(self) -> str:
        return f"{self.architecture}@{self.version}"

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.manifest.preprocess


def shared_preprocess(manifests: list[Manifest]) -> PreprocessConfig:
    """The one preprocessing every member of an ensemble uses; members that differ are refused."""
    if not manifests:
        raise InvalidInput("a model set needs at least one member")
    configs = {m.preprocess for m in manifests}
    if len(configs) > 1:
        grids = ", ".join(f"{m.architecture}@{m.version}: {m.spacing_mm} mm, HU {list(m.hu_window)}" for m in manifests)
        raise InvalidInput(f"ensemble members disagree on their input spacing or HU window ({grids})")
    return configs.pop()
