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

An imported nnU-Net v2 results folder or MONAI bundle is a version too (``register_nnunet``,
``register_bundle``): its ``weights.pt`` is the payload (``atlasloop.models.nnunet``,
``atlasloop.models.monai_bundle``), its manifest's configuration says its ``kind`` and maps the
model's classes onto the project's organs. Its spacing and window are those of the set it joins
(the grid its organ maps are averaged on); it preprocesses the native CT itself, as its framework
does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from atlasloop.common import layout
from atlasloop.common.errors import InvalidInput, NotFound
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.metrics import dice_offsets
from atlasloop.imaging.preprocess import PreprocessConfig
from atlasloop.models.architectures import BUILDERS, ArchitectureConfig, config
from atlasloop.models.records import SCHEMA, LoadedModel, Manifest, MemberRef, ModelSet, shared_preprocess

if TYPE_CHECKING:
    from atlasloop.models.monai_bundle import BundlePayload
    from atlasloop.models.nnunet import NnunetPayload

MEMBER_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")  # a key in object storage and a Serve deployment name


def _usable_grid(preprocess: PreprocessConfig | None) -> PreprocessConfig:
    preprocess = preprocess or PreprocessConfig()
    if not 0.25 <= preprocess.spacing_mm <= 8.0 or preprocess.hu_min >= preprocess.hu_max:
        raise InvalidInput(
            f"input spacing {preprocess.spacing_mm} mm (0.25-8) or HU window "
            f"[{preprocess.hu_min}, {preprocess.hu_max}] is not usable"
        )
    return preprocess


def build_member(manifest: Manifest, weights: bytes) -> LoadedModel:
    """A stored model version, verified and built: this project's label schema, a configuration
    this code builds, the recorded checksum, and a strict load of every tensor."""
    source = f"{manifest.architecture}/{manifest.version}"
    if manifest.label_schema != SCHEMA:
        raise InvalidInput(f"{source} was trained on another label schema")
    if hashlib.sha256(weights).hexdigest() != manifest.weights_sha256:
        raise InvalidInput(f"{source}: weights do not match their recorded SHA-256")
    if manifest.imported:
        kwargs = manifest.config["kwargs"]
        classes = {int(k): str(v) for k, v in kwargs["classes"].items()}
        runtime: Any
        if manifest.kind == "nnunet":
            from atlasloop.models import nnunet

            payload = nnunet.NnunetPayload.from_bytes(weights, source)
            runtime = nnunet.build_runtime(payload, classes, 0.5, bool(kwargs["mirroring"]))
        elif manifest.kind == "monai-bundle":
            from atlasloop.models import monai_bundle

            runtime = monai_bundle.build_runtime(monai_bundle.BundlePayload.from_bytes(weights, source), classes)
        else:
            raise InvalidInput(f"{source}: member kind {manifest.kind!r} is not one this release serves")
        imported = ArchitectureConfig(manifest.architecture, "imported", int(manifest.config["patch"]), kwargs)
        return LoadedModel(manifest.architecture, manifest.version, imported, runtime.network, manifest, runtime)
    cfg = config(manifest.config["architecture"], manifest.config["size"])
    if cfg.as_json() != manifest.config:
        raise InvalidInput(f"{source}: its configuration does not match this release's {cfg.architecture}/{cfg.size}")
    from atlasloop.models.checkpoints import load_checkpoint

    return LoadedModel(manifest.architecture, manifest.version, cfg, load_checkpoint(cfg, weights, source), manifest)


def _organs_of(manifest: Manifest) -> set[str]:
    """The organs a member predicts: all of the schema for this code's architectures, the mapped
    classes for an imported model."""
    if manifest.imported:
        return set(manifest.config["kwargs"]["classes"].values())
    return set(manifest.label_schema.values())


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
        preprocess = _usable_grid(preprocess)
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

    def register_nnunet(
        self,
        name: str,
        payload: NnunetPayload,
        classes: Mapping[int, str],
        mirroring: bool = True,
        version: str = "",
        preprocess: PreprocessConfig | None = None,
        provenance: dict | None = None,
    ) -> Manifest:
        """An nnU-Net v2 results folder's payload as version ``version`` of member ``name``; it is
        built and every fold loaded strictly before anything is stored."""
        kwargs = {
            "configuration": payload.configuration,
            "trainer": payload.trainer,
            "folds": sorted(payload.folds),
            "classes": {str(k): v for k, v in sorted(classes.items())},
            "mirroring": mirroring,
        }
        origin = {"source": "nnunetv2", "dataset": payload.plans.get("dataset_name", "")}
        return self._register_imported(
            name, "nnunet", payload.to_bytes(), max(payload.patch_size), kwargs, version, preprocess, provenance, origin
        )

    def register_bundle(
        self,
        name: str,
        payload: BundlePayload,
        classes: Mapping[int, str],
        version: str = "",
        preprocess: PreprocessConfig | None = None,
        provenance: dict | None = None,
    ) -> Manifest:
        """A MONAI bundle's payload as version ``version`` of member ``name``; it is built and its
        weights loaded strictly before anything is stored."""
        kwargs = {"classes": {str(k): v for k, v in sorted(classes.items())}}
        origin = {"source": "monai-bundle", "bundle": str(payload.metadata.get("name", ""))}
        return self._register_imported(
            name, "monai-bundle", payload.to_bytes(), payload.patch, kwargs, version, preprocess, provenance, origin
        )

    def _register_imported(
        self,
        name: str,
        kind: str,
        data: bytes,
        patch: int,
        kwargs: dict,
        version: str,
        preprocess: PreprocessConfig | None,
        provenance: dict | None,
        origin: dict,
    ) -> Manifest:
        if not MEMBER_NAME.fullmatch(name) or name in BUILDERS:
            raise InvalidInput(
                f"member name {name!r}: lower-case letters, digits and '-', at most 40, "
                f"not one of this code's architectures ({', '.join(sorted(BUILDERS))})"
            )
        preprocess = _usable_grid(preprocess)
        version = version or new_version()
        manifest = Manifest(
            architecture=name,
            version=version,
            config=ArchitectureConfig(name, "imported", patch, kwargs).as_json() | {"kind": kind},
            label_schema=dict(SCHEMA),
            spacing_mm=preprocess.spacing_mm,
            hu_window=(preprocess.hu_min, preprocess.hu_max),
            weights_sha256=hashlib.sha256(data).hexdigest(),
            weights_bytes=len(data),
            provenance=(provenance or {}) | origin,
            created_at=datetime.now(UTC).isoformat(),
        )
        build_member(manifest, data)  # built and loaded strictly: refused before anything is stored
        if self._store.exists(layout.manifest_key(name, version)):
            raise InvalidInput(f"model version {name}/{version} exists already")
        self._store.put_bytes(layout.weights_key(name, version), data)
        self._store.put_json(layout.manifest_key(name, version), manifest.as_json())
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
        return build_member(self.manifest(architecture, version), self.weights(architecture, version))

    def load_set(self, version: str) -> list[LoadedModel]:
        """Every member of a model set, loaded and verified."""
        return [self.load(m.architecture, m.version) for m in self.model_set(version).members]

    def create_set(
        self,
        members: list[tuple[str, str]],
        make_current: bool = False,
        version: str = "",
        expected_dice_offsets: dict[str, float] | None = None,
    ) -> ModelSet:
        manifests = [self.manifest(a, v) for a, v in members]
        if not manifests:
            raise InvalidInput("a model set needs at least one member")
        if any(m.label_schema != manifests[0].label_schema for m in manifests):
            raise InvalidInput("model set members disagree on the label schema")
        shared_preprocess(manifests)
        predicted = set().union(*(_organs_of(m) for m in manifests))
        unpredicted = [organ for organ in SCHEMA.values() if organ not in predicted]
        if unpredicted:
            raise InvalidInput(f"no member of the set predicts {', '.join(unpredicted)}; add a member that does")
        try:
            offsets = dice_offsets(expected_dice_offsets or {})
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"model set refused: {exc}") from None
        document = ModelSet(
            version or new_version(),
            tuple(MemberRef(a, v) for a, v in members),
            datetime.now(UTC).isoformat(),
            offsets,
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
