"""The model registry in object storage: versions with manifests, and model sets. Reading
manifests and sets needs no torch (the inference and training services only read them); registering
and loading a model imports it.

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
from datetime import UTC, datetime

from atlasloop.common import layout
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.preprocess import PreprocessConfig
from atlasloop.models.architectures import config
from atlasloop.models.records import SCHEMA, LoadedModel, Manifest, MemberRef, ModelSet, shared_preprocess


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


class ModelRegistry:
    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def register(
        self,
        architecture: str,
        size: str,
        weights: bytes,
        provenance: dict | None = None,
        metrics: dict | None = None,
        version: str = "",
        preprocess: PreprocessConfig | None = None,
        temperatures: dict[str, float] | None = None,
    ) -> Manifest:
        cfg = config(architecture, size)
        if any(not 0.01 <= t <= 100 for t in (temperatures or {}).values()):
            raise InvalidInput(f"temperatures {temperatures} outside 0.01-100")
        preprocess = preprocess or PreprocessConfig()
        if not 0.25 <= preprocess.spacing_mm <= 8.0 or preprocess.hu_min >= preprocess.hu_max:
            raise InvalidInput(
                f"input spacing {preprocess.spacing_mm} mm (0.25-8) or HU window "
                f"[{preprocess.hu_min}, {preprocess.hu_max}] is not usable"
            )
        from atlasloop.models.checkpoints import load_checkpoint  # torch: only to register and load

        load_checkpoint(cfg, weights, "weights")  # refuse before storing anything
        version = version or new_version()
        if self._store.exists(layout.manifest_key(architecture, version)):
            raise InvalidInput(f"model version {architecture}/{version} exists already")
        stored = self._store.put_bytes(layout.weights_key(architecture, version), weights)
        manifest = Manifest(
            architecture=architecture,
            version=version,
            config=cfg.as_json(),
            label_schema=dict(SCHEMA),
            spacing_mm=preprocess.spacing_mm,
            hu_window=(preprocess.hu_min, preprocess.hu_max),
            weights_sha256=stored.sha256,
            weights_bytes=stored.size_bytes,
            provenance=provenance or {},
            metrics=metrics or {},
            created_at=datetime.now(UTC).isoformat(),
            temperatures=dict(temperatures or {}),
        )
        # written last: the version exists from now on
        self._store.put_json(layout.manifest_key(architecture, version), manifest.as_json())
        return manifest

    def adopt(self, manifest: Manifest, weights: bytes) -> None:
        """Store a model version another registry made (a bundle's), as it was recorded there;
        the caller has verified it (:func:`atlasloop.models.bundles.unpack`)."""
        if self._store.exists(layout.manifest_key(manifest.architecture, manifest.version)):
            raise InvalidInput(f"model version {manifest.architecture}/{manifest.version} exists already")
        self._store.put_bytes(layout.weights_key(manifest.architecture, manifest.version), weights)
        self._store.put_json(layout.manifest_key(manifest.architecture, manifest.version), manifest.as_json())

    def manifest(self, architecture: str, version: str) -> Manifest:
        try:
            document = self._store.get_json(layout.manifest_key(architecture, version))
        except NotFound:
            raise NotFound(f"model version {architecture}/{version} does not exist") from None
        return Manifest.from_json(document)

    def weights(self, architecture: str, version: str) -> bytes:
        return self._store.get_bytes(layout.weights_key(architecture, version))

    def load(self, architecture: str, version: str) -> LoadedModel:
        manifest = self.manifest(architecture, version)
        if manifest.label_schema != SCHEMA:
            raise InvalidInput(f"{architecture}/{version} was trained on another label schema")
        cfg = config(manifest.config["architecture"], manifest.config["size"])
        if cfg.as_json() != manifest.config:
            raise InvalidInput(
                f"{architecture}/{version}: its configuration does not match this release's "
                f"{cfg.architecture}/{cfg.size}"
            )
        weights = self.weights(architecture, version)
        if hashlib.sha256(weights).hexdigest() != manifest.weights_sha256:
            raise InvalidInput(f"{architecture}/{version}: weights do not match their recorded SHA-256")
        from atlasloop.models.checkpoints import load_checkpoint

        module = load_checkpoint(cfg, weights, f"{architecture}/{version}")
        return LoadedModel(architecture, version, cfg, module, manifest)

    def load_set(self, version: str) -> list[LoadedModel]:
        """Every member of a model set, loaded and verified."""
        return [self.load(m.architecture, m.version) for m in self.model_set(version).members]

    def create_set(self, members: list[tuple[str, str]], make_current: bool = False, version: str = "") -> ModelSet:
        manifests = [self.manifest(a, v) for a, v in members]
        if not manifests:
            raise InvalidInput("a model set needs at least one member")
        if any(m.label_schema != manifests[0].label_schema for m in manifests):
            raise InvalidInput("model set members disagree on the label schema")
        shared_preprocess(manifests)
        document = ModelSet(
            version or new_version(), tuple(MemberRef(a, v) for a, v in members), datetime.now(UTC).isoformat()
        )
        self._store.put_json(layout.model_set_key(document.version), document.as_json())
        if make_current:
            self.set_current(document.version)
        return document

    def set_current(self, version: str) -> None:
        self.model_set(version)
        self._store.put_json(layout.CURRENT_MODEL_SET, {"version": version})

    def current(self) -> str:
        try:
            return str(self._store.get_json(layout.CURRENT_MODEL_SET)["version"])
        except NotFound:
            raise NotFound("no current model set; import models and create one") from None

    def model_set(self, version: str) -> ModelSet:
        try:
            return ModelSet.from_json(self._store.get_json(layout.model_set_key(version)))
        except NotFound:
            raise NotFound(f"model set {version!r} does not exist") from None

    def model_sets(self) -> list[ModelSet]:
        """Every model set, newest first."""
        keys = [k for k in self._store.list_keys(layout.MODEL_SETS) if k != layout.CURRENT_MODEL_SET]
        sets = (ModelSet.from_json(self._store.get_json(k)) for k in keys)
        return sorted(sets, key=lambda s: s.version, reverse=True)
