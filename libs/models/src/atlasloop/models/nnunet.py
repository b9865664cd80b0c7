"""nnU-Net v2 results folders as ensemble members (issue #23).

A results folder (``plans.json``, ``dataset.json``, ``fold_*/checkpoint_final.pth``: what
``nnUNetv2_train`` writes, and what TotalSegmentator ships) is read into one payload: the plans, the
dataset description, the configuration the checkpoints were trained as, the inference mirroring axes
and one state dict per fold. The registry stores that payload as the version's ``weights.pt``, and
the class map (nnU-Net label id -> project organ) in its manifest.

Prediction is nnU-Net's own, run through ``nnunetv2`` as a library (the optional ``nnunet`` extra):
its preprocessing from the plans (transpose, crop to non-zero, its normalisation scheme, resampling
to the target spacing), its sliding window (Gaussian weighting, tile step 1 - ``overlap``, the
checkpoint's mirroring axes), the folds' logits averaged, resampled back and softmaxed as nnU-Net
exports probabilities. We do not re-implement it: a member must predict what the lab's nnU-Net
predicts, and the identity test holds us to it. What is ours:

- **Nothing from the folder runs as code.** nnU-Net loads checkpoints with ``weights_only=False``
  and resolves the network class and its building blocks from the plans by any dotted name. Here
  checkpoints load ``weights_only`` (plain containers, tensors and numpy scalars only), the network
  class must be a module class defined in ``dynamic_network_architectures.architectures`` and every
  imported building block one defined in ``torch.nn`` (``atlasloop.models.safe_names``). Trainer
  classes are never looked up: the network is built from the plans (nnU-Net's own
  ``get_network_from_plans``), which is how every released nnU-Net v2 trainer builds it.
- **Orientation.** nnU-Net reads images with SimpleITK, whose arrays are (z, y, x) in the file's
  voxel order; our volumes are (i, j, k) in the same voxel order, so the image goes in transposed
  and the probabilities come back transposed, with the spacing reversed.
- **Classes.** The probabilities of the nnU-Net classes mapped onto one organ are summed; unmapped
  classes are dropped. Region-based models (``regions_class_order``) are refused: their outputs are
  sigmoids of overlapping regions, not classes.

Memory: like nnU-Net's own export with probabilities, all of a model's classes exist at once on the
native grid (26 classes of a 512 x 512 x 300 CT are 8 GB of float32; a case above
``class_maps.MAX_PROBABILITY_BYTES`` is refused with the reason); the organ maps that leave the
member are the project's.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.volume import Volume
from atlasloop.models.class_maps import check_probability_memory, map_onto_organs
from atlasloop.models.safe_names import locate_class

FORMAT = "atlasloop-nnunet/1"
KIND = "nnunet"
CHECKPOINT = "checkpoint_final.pth"
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_CHECKPOINT_BYTES = 8 * 1024**3
NETWORK_PACKAGE = "dynamic_network_architectures.architectures"
BLOCK_PACKAGE = "torch.nn"


@dataclass(frozen=True)
class NnunetPayload:
    """Everything a results folder holds that prediction needs, and nothing that runs."""

    plans: dict[str, Any]
    dataset: dict[str, Any]
    configuration: str
    trainer: str
    mirror_axes: tuple[int, ...] | None
    folds: dict[str, dict[str, torch.Tensor]]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(
            {
                "format": FORMAT,
                "plans": self.plans,
                "dataset": self.dataset,
                "configuration": self.configuration,
                "trainer": self.trainer,
                "mirror_axes": list(self.mirror_axes) if self.mirror_axes is not None else None,
                "folds": self.folds,
            },
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> NnunetPayload:
        document = _load_weights_only(io.BytesIO(data), source)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise InvalidInput(f"{source}: not an nnU-Net payload ({FORMAT})")
        axes = document["mirror_axes"]
        return cls(
            document["plans"],
            document["dataset"],
            str(document["configuration"]),
            str(document["trainer"]),
            tuple(int(a) for a in axes) if axes is not None else None,
            {str(k): v for k, v in document["folds"].items()},
        )

    @property
    def labels(self) -> dict[str, int]:
        """nnU-Net class name -> label id, as ``dataset.json`` declares them."""
        return {str(name): int(value) for name, value in self.dataset["labels"].items()}

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.plans["configurations"][self.configuration]["patch_size"])


def _load_weights_only(source: Any, name: str) -> Any:
    """``torch.load`` with no pickled code: nnU-Net checkpoints also hold numpy scalars and dtypes
    in their training log, which are allowed as data."""
    from numpy._core.multiarray import scalar

    dtypes = [type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8", "b1")]
    # numpy 1 pickled these under numpy.core, numpy 2 under numpy._core
    allowed: list[Any] = [np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar"), *dtypes]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad or unsafe file
        raise InvalidInput(f"{name}: not a checkpoint that loads without running code ({type(exc).__name__})") from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidInput(f"{path.name} is missing from the nnU-Net results folder {path.parent}")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise InvalidInput(f"{path} is larger than {MAX_JSON_BYTES} bytes")
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{path}: not a JSON object")
    return document


def read_results_folder(folder: Path, folds: list[str] | None = None, checkpoint: str = CHECKPOINT) -> NnunetPayload:
    """The payload of an nnU-Net v2 results folder; ``folds`` as nnU-Net names them (``0``..``4``,
    ``all``), every ``fold_*`` holding ``checkpoint`` when None."""
    folder = Path(folder)
    plans = _read_json(folder / "plans.json")
    dataset = _read_json(folder / "dataset.json")
    if folds is None:
        folds = sorted(p.name.removeprefix("fold_") for p in folder.glob("fold_*") if (p / checkpoint).is_file())
    if not folds:
        raise InvalidInput(f"{folder}: no fold_*/{checkpoint}")
    states: dict[str, dict[str, torch.Tensor]] = {}
    configuration = trainer = ""
    mirror_axes: tuple[int, ...] | None = None
    for fold in folds:
        if not re.fullmatch(r"[0-9]+|all", fold):
            raise InvalidInput(f"fold {fold!r}: nnU-Net folds are numbers or 'all'")
        path = folder / f"fold_{fold}" / checkpoint
        if not path.is_file():
            raise InvalidInput(f"{path} is missing")
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise InvalidInput(f"{path} is larger than {MAX_CHECKPOINT_BYTES} bytes")
        loaded = _load_weights_only(path, str(path))
        if not isinstance(loaded, dict) or not isinstance(loaded.get("network_weights"), dict):
            raise InvalidInput(f"{path}: not an nnU-Net checkpoint (no network_weights)")
        init = loaded.get("init_args") or {}
        this = (str(init.get("configuration", "")), str(loaded.get("trainer_name", "")))
        if configuration and this != (configuration, trainer):
            raise InvalidInput(f"{path}: trained as {this}, the other folds as {(configuration, trainer)}")
        configuration, trainer = this
        axes = loaded.get("inference_allowed_mirroring_axes")
        mirror_axes = tuple(int(a) for a in axes) if axes is not None else None
        states[fold] = {k: v for k, v in loaded["network_weights"].items() if isinstance(v, torch.Tensor)}
    payload = NnunetPayload(plans, dataset, configuration, trainer, mirror_axes, states)
    check_payload(payload)
    return payload


def check_payload(payload: NnunetPayload) -> None:
    """Refuse what this member cannot serve faithfully, with the reason."""
    configurations = payload.plans.get("configurations")
    if not isinstance(configurations, dict) or payload.configuration not in configurations:
        raise InvalidInput(f"the checkpoints' configuration {payload.configuration!r} is not in plans.json")
    if payload.dataset.get("regions_class_order") is not None:
        raise InvalidInput("region-based nnU-Net models (regions_class_order) are not supported")
    labels = payload.labels
    if labels.get("background") != 0 or sorted(labels.values()) != list(range(len(labels))):
        raise InvalidInput(f"dataset.json labels must be background 0 and consecutive ids (got {labels})")
    channels = payload.dataset.get("channel_names") or payload.dataset.get("modality") or {}
    if len(channels) != 1:
        raise InvalidInput(f"only single-channel (CT) nnU-Net models can join the ensemble (channels {channels})")
    configuration = _configuration(payload)
    if configuration.get("previous_stage"):
        raise InvalidInput(
            f"{payload.configuration} is a cascade stage (it needs {configuration['previous_stage']}'s "
            "segmentation as input): import a full-resolution or low-resolution configuration"
        )
    architecture = configuration["architecture"]
    locate_class(str(architecture["network_class_name"]), (NETWORK_PACKAGE,), torch.nn.Module, "network class")
    for name in architecture.get("_kw_requires_import", []):
        value = architecture["arch_kwargs"].get(name)
        if value is not None:
            locate_class(str(value), (BLOCK_PACKAGE,), torch.nn.Module, f"network building block {name}")


def _configuration(payload: NnunetPayload) -> dict[str, Any]:
    """The configuration with nnU-Net's inheritance resolved (its own manager does it)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    return dict(PlansManager(payload.plans).get_configuration(payload.configuration).configuration)


def class_map(payload: NnunetPayload, explicit: Mapping[str, str] | None = None) -> dict[int, str]:
    """nnU-Net label id -> project organ (:func:`atlasloop.models.class_maps.map_onto_organs`)."""
    return map_onto_organs({v: k for k, v in payload.labels.items()}, explicit, "the model's dataset.json")


@dataclass
class NnunetRuntime:
    """A loaded nnU-Net member: nnU-Net's predictor initialised from the payload."""

    predictor: Any  # nnunetv2.inference.predict_from_raw_data.nnUNetPredictor
    classes: dict[int, str]  # nnU-Net label id -> organ

    def probabilities(self, ct: Volume) -> np.ndarray:
        """Softmax probabilities (classes, i, j, k) on the CT's native grid, as nnU-Net exports them."""
        check_probability_memory(self.predictor.label_manager.num_segmentation_heads, ct.shape, "nnU-Net member")
        spacing = [float(s) for s in reversed(ct.spacing)]
        image = np.ascontiguousarray(ct.array.transpose(2, 1, 0), dtype=np.float32)[None]
        _, probs = self.predictor.predict_single_npy_array(image, {"spacing": spacing}, None, None, True)
        return np.asarray(probs, dtype=np.float32).transpose(0, 3, 2, 1)

    @property
    def network(self) -> torch.nn.Module:
        return self.predictor.network

    def organ_probabilities(self, ct: Volume, overlap: float = 0.5, device: str = "cpu") -> dict[str, np.ndarray]:
        """Per mapped organ, the summed probability of its classes on the native grid, with nnU-Net's
        tile step 1 - ``overlap`` on ``device``."""
        self.predictor.tile_step_size = 1.0 - overlap
        if self.predictor.device.type != torch.device(device).type:
            self.predictor.device = torch.device(device)
            self.predictor.perform_everything_on_device = self.predictor.device.type == "cuda"
        probs = self.probabilities(ct)
        organs: dict[str, np.ndarray] = {}
        for label, organ in sorted(self.classes.items()):
            organs[organ] = organs[organ] + probs[label] if organ in organs else probs[label].copy()
        return organs


def build_runtime(payload: NnunetPayload, classes: Mapping[int, str], overlap: float, mirroring: bool) -> NnunetRuntime:
    """nnU-Net's predictor for ``payload``: the network built from the plans (checked by
    :func:`check_payload`), every fold's weights loaded strictly."""
    check_payload(payload)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(payload.plans)
    configuration = plans.get_configuration(payload.configuration)
    label_manager = plans.get_label_manager(payload.dataset)
    network = get_network_from_plans(
        configuration.network_arch_class_name,
        configuration.network_arch_init_kwargs,
        configuration.network_arch_init_kwargs_req_import,
        determine_num_input_channels(plans, configuration, payload.dataset),
        label_manager.num_segmentation_heads,
        allow_init=False,
        deep_supervision=False,
    )
    for fold, state in payload.folds.items():
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InvalidInput(f"fold {fold}: its weights do not fit the network of plans.json: {exc}") from None
    predictor = nnUNetPredictor(
        tile_step_size=1.0 - overlap,
        use_gaussian=True,
        use_mirroring=mirroring,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network.eval(),
        plans,
        configuration,
        list(payload.folds.values()),
        payload.dataset,
        payload.trainer,
        payload.mirror_axes,
    )
    return NnunetRuntime(predictor, dict(classes))
