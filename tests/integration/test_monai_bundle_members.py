"""MONAI bundles as ensemble members (issue #23), on the real S3: a bundle written in the model
zoo's layout imports with ``atlasloop models import-bundle`` and predicts the real CT exactly as
MONAI runs the bundle itself (``monai.bundle.run`` with its own evaluator, checkpoint loader and
SaveImaged), in the CT's stored orientation and in a permuted and flipped one; a bundle whose
predicting parts would run code is refused and nothing is stored. (It serves on Ray Serve beside a
MONAI member in test_inference_service.)"""

from __future__ import annotations

import copy
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from atlasloop.cli.__main__ import main
from atlasloop.common.errors import InvalidInput
from atlasloop.imaging.volume import load_nifti
from atlasloop.models.monai_bundle import class_map, read_bundle_folder

from .monai_bundle_folder import INFERENCE, write_bundle
from .reoriented import turned_copy

pytestmark = pytest.mark.integration


def _monai_runs(bundle, image, out, probabilities):
    """``monai.bundle.run`` of the bundle's own inference configuration on one file: the saved
    label map, or with AsDiscreted disabled the saved probabilities (channels first)."""
    from monai.bundle import run

    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    shutil.copy(image, data / "ct.nii.gz")
    overrides = {"postprocessing#transforms#2#_disabled_": True} if probabilities else {}
    run(
        run_id="run",
        init_id="initialize",
        config_file=str(bundle / "configs" / "inference.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        bundle_root=str(bundle),
        dataset_dir=str(data),
        output_dir=str(out / "saved"),
        **overrides,
    )
    saved = np.asarray(nib.load(out / "saved" / "ct_seg.nii.gz").dataobj)
    return np.moveaxis(saved, -1, 0) if probabilities else saved


def test_an_imported_bundle_predicts_the_real_ct_as_monai_runs_it(registry, real_ct_dir, tmp_path, capsys):
    registry_, _ = registry
    bundle = write_bundle(tmp_path / "ct_segmentation")
    assert main(["models", "import-bundle", str(bundle), "--name", "zoo-ct", "--version", "v1"]) == 0
    printed = capsys.readouterr().out
    assert "liver->liver, spleen->spleen, left kidney->kidney_left" in printed
    assert "channels left out (no organ of the project): colon" in printed
    member = registry_.load("zoo-ct", "v1")
    assert member.manifest.kind == "monai-bundle" and member.runtime.classes == {
        1: "liver",
        2: "spleen",
        3: "kidney_left",
    }

    stored = real_ct_dir / "example_ct_sm.nii.gz"
    for name, path in {"stored": stored, "turned": turned_copy(stored, tmp_path / "turned.nii.gz")}.items():
        ct = load_nifti(path)
        ours = member.runtime.probabilities(ct)
        theirs = _monai_runs(bundle, path, tmp_path / name, probabilities=True)
        assert ours.shape == (5, *ct.shape) == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
        assert np.array_equal(ours.argmax(0), _monai_runs(bundle, path, tmp_path / f"{name}-labels", False))
        organs = member.runtime.organ_probabilities(ct, 0.5, "cpu")
        assert sorted(organs) == ["kidney_left", "liver", "spleen"] and np.array_equal(organs["spleen"], ours[2])


def test_a_bundle_whose_predicting_parts_would_run_code_is_refused_and_nothing_is_stored(registry, tmp_path):
    registry_, store = registry

    def with_change(change):
        config = copy.deepcopy(INFERENCE)
        change(config)
        return config

    refused = {
        "expressions and macros": lambda c: c["network_def"].update(channels="$[8, 16, 32]"),
        "is not from monai.transforms": lambda c: c["preprocessing"]["transforms"].append(
            {"_target_": "subprocess.Popen", "args": ["true"]}
        ),
        "is not from monai.networks.nets": lambda c: c["network_def"].update(_target_="monai.transforms.Lambda"),
        "not a Module class defined in monai.networks.nets": lambda c: c["network_def"].update(
            _target_="monai.networks.nets.unet.torch.hub.load"  # inside the package by name, out by its imports
        ),
        "leaves the parts": lambda c: c["preprocessing"]["transforms"][1].update(keys="@dataset"),
        "is not one of MONAI's image readers": lambda c: c["preprocessing"]["transforms"][0].update(
            reader="torch.hub.load"  # LoadImage would locate it and call it with the transform's arguments
        ),
        "names code outside": lambda c: c["inferer"].update(padding_mode="builtins.open"),
        "_requires_ is not allowed": lambda c: c["inferer"].update(_requires_="$print('hi')"),
    }
    for index, (reason, change) in enumerate(refused.items()):
        bundle = write_bundle(tmp_path / f"b{index}", inference=with_change(change))
        with pytest.raises(InvalidInput, match=reason):
            registry_.register_bundle("zoo-x", read_bundle_folder(bundle), {1: "liver"}, version="v1")

    # MONAI's own names are fine, short or dotted, and so is one of its readers
    def dotted_and_reader(config):
        config["network_def"]["_target_"] = "monai.networks.nets.UNet"
        config["preprocessing"]["transforms"][0]["reader"] = "NibabelReader"

    read_bundle_folder(write_bundle(tmp_path / "dotted", inference=with_change(dotted_and_reader)))

    torchscript = write_bundle(tmp_path / "ts")
    (torchscript / "models" / "model.pt").rename(torchscript / "models" / "model.ts")
    with pytest.raises(InvalidInput, match="TorchScript is code"):
        read_bundle_folder(torchscript)
    other = write_bundle(tmp_path / "other")
    torch.save({"w": torch.zeros(3)}, other / "models" / "model.pt")
    with pytest.raises(InvalidInput, match="do not fit the bundle's network_def"):
        read_bundle_folder(other)
    payload = read_bundle_folder(write_bundle(tmp_path / "good"))
    with pytest.raises(InvalidInput, match="not an organ of the project"):
        class_map(payload, {"liver": "heart"})
    assert store.list_keys("models/") == []
