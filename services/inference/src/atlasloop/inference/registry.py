"""The model registry in object storage: versions with manifests, and model sets.

``models/<architecture>/<version>/weights.pt`` holds a state dict; ``manifest.json`` beside it
records the architecture configuration, the label schema, the input spacing and HU window, the
weights' SHA-256, training provenance and metrics. The spacing is the model's: 1.5 mm by default
(the method's), coarser for fast models (TotalSegmentator's ``--fast`` runs at 3 mm; so does the
CPU demo). Members of one set share spacing and window, since the ensemble averages on one grid.
``model-sets/<version>.json`` lists the members of an ensemble; ``model-sets/current.json`` names
the current set. Loading verifies the checksum, refuses a manifest whose label schema or
configuration differs from this code's, and loads the state dict strictly (every tensor must fit).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime

import torch
from torch import nn

from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.preprocess import PreprocessConfig
from atlasloop.inference.architectures import ArchitectureConfig, build, config

SCHEMA = {str(k): v for k, v in ORGANS.items()}


@dataclass
class LoadedModel:
    architecture: str
    version: str
    config: ArchitectureConfig
    module: nn.Module
    manifest: dict

    @property
    def preprocess(self) -> PreprocessConfig:
        return preprocess_of(self.manifest)


def preprocess_of(manifest: dict) -> PreprocessConfig:
    """The input grid and HU window a model was trained on, from its manifest."""
    hu_min, hu_max = manifest["hu_window"]
    return PreprocessConfig(spacing_mm=float(manifest["spacing_mm"]), hu_min=float(hu_min), hu_max=float(hu_max))


def shared_preprocess(manifests: list[dict]) -> PreprocessConfig:
    """The one preprocessing every member of an ensemble uses; members that differ are refused."""
    if not manifests:
        raise InvalidInput("a model set needs at least one member")
    configs = {preprocess_of(m) for m in manifests}
    if len(configs) > 1:
        grids = ", ".join(f"{m['architecture']}@{m['version']}: {m['spacing_mm']} mm, HU {m['hu_window']}"
                          for m in manifests)
        raise InvalidInput(f"ensemble members disagree on their input spacing or HU window ({grids})")
    return configs.pop()


def _version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


def state_dict_bytes(module_or_state: nn.Module | dict) -> bytes:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def read_state_dict(data: bytes, source: str) -> dict:
    """A plain PyTorch or MONAI checkpoint: a state dict, or a dict holding one under a usual key."""
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise InvalidInput(f"{source}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "net", "network_weights"):
        if isinstance(loaded, dict) and key in loaded and isinstance(loaded[key], dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InvalidInput(f"{source}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}  # DataParallel/DDP prefixes


def load_into(cfg: ArchitectureConfig, state: dict, source: str) -> nn.Module:
    module = build(cfg)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise InvalidInput(f"{source}: tensors do not fit {cfg.architecture}/{cfg.size}: {' '.join(first)}") from None
    return module.eval()


class ModelRegistry:
    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def register(self, architecture: str, size: str, weights: bytes, provenance: dict | None = None,
                 metrics: dict | None = None, version: str = "", preprocess: PreprocessConfig | None = None) -> dict:
        cfg = config(architecture, size)
        preprocess = preprocess or PreprocessConfig()
        if not 0.25 <= preprocess.spacing_mm <= 8.0 or preprocess.hu_min >= preprocess.hu_max:
            raise InvalidInput(f"input spacing {preprocess.spacing_mm} mm (0.25-8) or HU window "
                               f"[{preprocess.hu_min}, {preprocess.hu_max}] is not usable")
        load_into(cfg, read_state_dict(weights, "weights"), "weights")  # refuse before storing anything
        version = version or _version()
        prefix = f"models/{architecture}/{version}/"
        if self._store.exists(prefix + "manifest.json"):
            raise InvalidInput(f"model version {architecture}/{version} exists already")
        stored = self._store.put_bytes(prefix + "weights.pt", weights)
        manifest = {
            "architecture": architecture, "version": version, "config": cfg.as_json(), "label_schema": SCHEMA,
            "spacing_mm": preprocess.spacing_mm, "hu_window": [preprocess.hu_min, preprocess.hu_max],
            "weights_sha256": stored.sha256, "weights_bytes": stored.size_bytes,
            "provenance": provenance or {}, "metrics": metrics or {},
            "created_at": datetime.now(UTC).isoformat(),
        }
        self._store.put_json(prefix + "manifest.json", manifest)  # written last: the version exists now
        return manifest

    def manifest(self, architecture: str, version: str) -> dict:
        try:
            return self._store.get_json(f"models/{architecture}/{version}/manifest.json")  # type: ignore[return-value]
        except NotFound:
            raise NotFound(f"model version {architecture}/{version} does not exist") from None

    def load(self, architecture: str, version: str) -> LoadedModel:
        manifest = self.manifest(architecture, version)
        if manifest["label_schema"] != SCHEMA:
            raise InvalidInput(f"{architecture}/{version} was trained on another label schema")
        cfg = config(manifest["config"]["architecture"], manifest["config"]["size"])
        if cfg.as_json() != manifest["config"]:
            raise InvalidInput(f"{architecture}/{version}: its configuration does not match this release's "
                               f"{cfg.architecture}/{cfg.size}")
        weights = self._store.get_bytes(f"models/{architecture}/{version}/weights.pt")
        if hashlib.sha256(weights).hexdigest() != manifest["weights_sha256"]:
            raise InvalidInput(f"{architecture}/{version}: weights do not match their recorded SHA-256")
        module = load_into(cfg, read_state_dict(weights, f"{architecture}/{version}"), f"{architecture}/{version}")
        return LoadedModel(architecture, version, cfg, module, manifest)

    def create_set(self, members: list[tuple[str, str]], make_current: bool = False, version: str = "") -> dict:
        manifests = [self.manifest(a, v) for a, v in members]
        if not manifests:
            raise InvalidInput("a model set needs at least one member")
        if any(m["label_schema"] != manifests[0]["label_schema"] for m in manifests):
            raise InvalidInput("model set members disagree on the label schema")
        shared_preprocess(manifests)
        document = {"version": version or _version(),
                    "members": [{"architecture": a, "version": v} for a, v in members],
                    "created_at": datetime.now(UTC).isoformat()}
        self._store.put_json(f"model-sets/{document['version']}.json", document)
        if make_current:
            self.set_current(document["version"])
        return document

    def set_current(self, version: str) -> None:
        self.model_set(version)
        self._store.put_json("model-sets/current.json", {"version": version})

    def current(self) -> str:
        try:
            return str(self._store.get_json("model-sets/current.json")["version"])  # type: ignore[index]
        except NotFound:
            raise NotFound("no current model set; import models and create one") from None

    def model_set(self, version: str) -> dict:
        try:
            return self._store.get_json(f"model-sets/{version}.json")  # type: ignore[return-value]
        except NotFound:
            raise NotFound(f"model set {version!r} does not exist") from None

    def model_sets(self) -> list[dict]:
        keys = [k for k in self._store.list_keys("model-sets/") if not k.endswith("current.json")]
        return sorted((self._store.get_json(k) for k in keys), key=lambda d: d["version"], reverse=True)  # type: ignore[index]
