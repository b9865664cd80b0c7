"""MONAI bundles as ensemble members (issue #23).

A bundle folder (``configs/metadata.json``, ``configs/inference.json`` or ``.yaml``,
``models/model.pt``: the MONAI model zoo's layout) is read into one payload: the four parts of the
inference configuration that make a prediction (``network_def``, ``preprocessing``, ``inferer``,
``postprocessing``), the metadata and the state dict. The registry stores the payload as the
version's ``weights.pt`` and the class map (channel -> project organ) in its manifest.

Prediction is the bundle's own, built by MONAI's ``ConfigParser`` from those parts: its
preprocessing reads the CT (written to a temporary NIfTI, as ``LoadImaged`` expects a file), its
inferer runs the network, and its postprocessing up to the first transform that discretises
(``AsDiscreted``) gives per-channel probabilities, which ``Invertd`` brings back to the CT's grid
as the bundle itself does before saving. Writing files (``SaveImaged``) is never run.

**Nothing from the bundle runs as code.** A bundle configuration may hold Python expressions
(``$...``), which MONAI evaluates, and ``_target_`` names any importable callable. Here the parts
are refused when they hold an expression, a macro (``%``) or ``_requires_``, when a reference
(``@x``) leaves them, or when a ``_target_`` is not a class defined in MONAI's networks
(``network_def``), its transforms (``preprocessing``, ``postprocessing``) or its inferers
(``inferer``) (``atlasloop.models.safe_names``), when an image reader is not one of MONAI's
(``LoadImage`` locates a reader by any dotted name and calls it), or when any other value is a
dotted name of importable code. The rest of the configuration (datasets, handlers, evaluators,
expressions that run the bundle) is not read.
TorchScript models (``model.ts``) are code and are refused; the state dict loads ``weights_only``.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.volume import Volume, save_nifti
from atlasloop.models.checkpoints import read_state_dict
from atlasloop.models.class_maps import check_probability_memory, map_onto_organs
from atlasloop.models.safe_names import DOTTED, locate_class

FORMAT = "atlasloop-monai-bundle/1"
KIND = "monai-bundle"
PARTS: dict[str, tuple[str, ...]] = {
    "network_def": ("monai.networks.nets",),
    "preprocessing": ("monai.transforms",),
    "inferer": ("monai.inferers",),
    "postprocessing": ("monai.transforms",),
}
REFERABLE = {"@preprocessing", "@network_def", "@inferer"}  # references between the parts read here
IGNORED_KEYS = {"_desc_", "_disabled_"}
DISCRETISING = {"AsDiscreted", "AsDiscrete", "SaveImaged", "SaveImage"}
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_WEIGHTS_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class BundlePayload:
    """The parts of a bundle that predict, checked, and its weights."""

    config: dict[str, Any]  # network_def, preprocessing, inferer, postprocessing
    metadata: dict[str, Any]
    weights: dict[str, torch.Tensor]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        document = {"format": FORMAT, "config": json.dumps(self.config), "metadata": json.dumps(self.metadata)}
        torch.save(document | {"weights": self.weights}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> BundlePayload:
        try:
            document = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise InvalidInput(f"{source}: not a MONAI bundle payload ({type(exc).__name__})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise InvalidInput(f"{source}: not a MONAI bundle payload ({FORMAT})")
        payload = cls(json.loads(document["config"]), json.loads(document["metadata"]), document["weights"])
        check_config(payload.config)
        return payload

    @property
    def channels(self) -> dict[int, str]:
        """Output channel -> name, from the metadata's ``network_data_format`` (MONAI's schema)."""
        try:
            definition = self.metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        except (KeyError, TypeError):
            return {}
        return {int(k): str(v) for k, v in definition.items()}

    @property
    def patch(self) -> int:
        roi = self.config["inferer"].get("roi_size", [96])
        return int(max(roi)) if isinstance(roi, list) else int(roi)


def _read_config(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            document = yaml.safe_load(text)
        else:
            document = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - json and yaml raise their own types
        raise InvalidInput(f"{path}: not readable ({type(exc).__name__}: {exc})") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{path}: not a mapping")
    return document


def read_bundle_folder(folder: Path, config_name: str = "inference") -> BundlePayload:
    """The payload of a MONAI bundle folder."""
    folder = Path(folder)
    configs = [folder / "configs" / f"{config_name}{suffix}" for suffix in (".json", ".yaml", ".yml")]
    found = [c for c in configs if c.is_file()]
    if not found:
        raise InvalidInput(f"{folder}: no configs/{config_name}.json or .yaml")
    config = _read_config(found[0])
    metadata = (
        _read_config(folder / "configs" / "metadata.json") if (folder / "configs" / "metadata.json").is_file() else {}
    )
    weights_path = folder / "models" / "model.pt"
    if not weights_path.is_file():
        hint = " (TorchScript is code and is not loaded)" if (folder / "models" / "model.ts").is_file() else ""
        raise InvalidInput(f"{folder}: no models/model.pt{hint}")
    if weights_path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise InvalidInput(f"{weights_path} is larger than {MAX_WEIGHTS_BYTES} bytes")
    missing = [part for part in PARTS if part not in config]
    if missing:
        raise InvalidInput(f"{found[0]}: the inference configuration has no {', '.join(missing)}")
    parts = {part: config[part] for part in PARTS}
    parts["postprocessing"] = _until_discrete(parts["postprocessing"])
    check_config(parts)
    payload = BundlePayload(parts, metadata, read_state_dict(weights_path.read_bytes(), str(weights_path)))
    build_runtime(payload, {}, strict_classes=False)  # the network builds and every tensor fits
    return payload


def _until_discrete(post: Any) -> Any:
    """The postprocessing up to its first discretising or writing transform (what follows works on
    labels or files, and is not read)."""
    if not (isinstance(post, dict) and isinstance(post.get("transforms"), list)):
        return post
    kept = []
    for transform in post["transforms"]:
        target = str(transform.get("_target_", "")) if isinstance(transform, dict) else ""
        if target.rsplit(".", 1)[-1] in DISCRETISING:
            break
        kept.append(transform)
    return post | {"transforms": kept}


def check_config(parts: Mapping[str, Any]) -> None:
    """Refuse any part that would run code or reach outside what predicts, with the reason."""
    from monai.bundle.config_item import ComponentLocator
    from monai.inferers import Inferer
    from monai.transforms import Transform

    locator = ComponentLocator()
    bases: dict[str, type] = {
        "network_def": torch.nn.Module,
        "preprocessing": Transform,
        "inferer": Inferer,
        "postprocessing": Transform,
    }

    def check_target(target: str, part: str, where: str) -> None:
        name = target
        if "." not in target:  # MONAI's short names: the module MONAI's own locator finds for it
            module = locator.get_component_module_name(target)
            if not isinstance(module, str):
                raise InvalidInput(f"{where}: _target_ {target!r} is not one MONAI component")
            name = f"{module}.{target}"
        locate_class(name, PARTS[part], bases[part], f"{where}: _target_")

    def check_reader(reader: Any, where: str) -> None:
        """Only MONAI's own image readers, by the names ``monai.data`` exports."""
        import monai.data

        found = getattr(monai.data, reader, None) if isinstance(reader, str) and reader.isidentifier() else None
        if reader is not None and not (inspect.isclass(found) and issubclass(found, monai.data.ImageReader)):
            raise InvalidInput(f"{where}: {reader!r} is not one of MONAI's image readers")

    def walk(node: Any, part: str, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_":
                    check_target(str(value), part, where)
                    continue
                if key == "reader":  # LoadImage locates a reader by any dotted name and calls it
                    for reader in value if isinstance(value, list) else [value]:
                        check_reader(reader, f"{where}#reader")
                    continue
                if key in ("_requires_", "_mode_") or (
                    key.startswith("_") and key.endswith("_") and key not in IGNORED_KEYS
                ):
                    raise InvalidInput(f"{where}: {key} is not allowed in a member's configuration")
                walk(value, part, f"{where}#{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, part, f"{where}#{index}")
        elif isinstance(node, str):
            if DOTTED.fullmatch(node) and importlib.util.find_spec(node.split(".", 1)[0]) is not None:
                raise InvalidInput(f"{where}: {node!r} names code outside the component's own arguments")
            if node.startswith("$") or node.startswith("%"):
                raise InvalidInput(f"{where}: expressions and macros ({node[:40]!r}) are code and are not run")
            if node.startswith("@") and node not in REFERABLE:
                raise InvalidInput(f"{where}: the reference {node!r} leaves the parts a member reads")

    for part in PARTS:
        walk(parts[part], part, part)


def class_map(payload: BundlePayload, explicit: Mapping[str, str] | None = None) -> dict[int, str]:
    """Channel -> project organ, through ``metadata.json``'s ``channel_def``
    (:func:`atlasloop.models.class_maps.map_onto_organs`)."""
    return map_onto_organs(payload.channels, explicit, "the bundle's channel_def")


@dataclass
class BundleRuntime:
    """A loaded bundle member: the network, preprocessing, inferer and postprocessing it declares."""

    network: torch.nn.Module
    preprocessing: Any
    inferer: Any
    postprocessing: Any  # up to the first discretising transform
    classes: dict[int, str]
    channels: dict[int, str]  # every output channel (metadata.json's channel_def)

    def probabilities(self, ct: Volume, device: str = "cpu") -> np.ndarray:
        """Per-channel probabilities (channels, i, j, k) on the CT's native grid, as the bundle's
        postprocessing gives them before it discretises."""
        check_probability_memory(max(len(self.channels), 1), ct.shape, "MONAI bundle member")
        with tempfile.TemporaryDirectory(prefix="atlasloop-bundle-") as tmp:
            data = self.preprocessing({"image": str(save_nifti(ct, Path(tmp) / "image.nii"))})
        image = data["image"]
        network = self.network.to(device)
        with torch.inference_mode():
            data["pred"] = self.inferer(image[None].to(device), network)[0].cpu()
        data = self.postprocessing(data)
        return np.asarray(data["pred"].detach().cpu().numpy(), dtype=np.float32)

    def organ_probabilities(self, ct: Volume, overlap: float, device: str) -> dict[str, np.ndarray]:
        """Per mapped organ, the summed probability of its channels on the native grid (the
        bundle's own overlap stays: it is part of what the bundle declares)."""
        probs = self.probabilities(ct, device)
        organs: dict[str, np.ndarray] = {}
        for channel, organ in sorted(self.classes.items()):
            organs[organ] = organs[organ] + probs[channel] if organ in organs else probs[channel].copy()
        return organs


def build_runtime(payload: BundlePayload, classes: Mapping[int, str], strict_classes: bool = True) -> BundleRuntime:
    """The bundle's parts instantiated by MONAI's ConfigParser (after :func:`check_config`), the
    weights loaded strictly."""
    check_config(payload.config)
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser(json.loads(json.dumps(payload.config)))
    network = parser.get_parsed_content("network_def")
    try:
        network.load_state_dict(payload.weights, strict=True)
    except RuntimeError as exc:
        raise InvalidInput(f"the weights do not fit the bundle's network_def: {str(exc).splitlines()[0]}") from None
    post = parser.get_parsed_content("postprocessing")
    transforms = list(post.transforms) if isinstance(post, Compose) else [post]
    kept = []
    for transform in transforms:
        if type(transform).__name__ in DISCRETISING:
            break
        kept.append(transform)
    channels = payload.channels
    if strict_classes and any(c not in channels for c in classes):
        raise InvalidInput(f"classes {sorted(classes)} are not all channels of the bundle ({sorted(channels)})")
    return BundleRuntime(
        network.eval(),
        parser.get_parsed_content("preprocessing"),
        parser.get_parsed_content("inferer"),
        Compose(kept),
        dict(classes),
        channels,
    )
