"""nnU-Net v2 results folders as ensemble members (issue #23), on the real S3: a folder written in
nnU-Net's own format imports with ``atlasloop models import-nnunet`` and predicts the real CT exactly
as nnU-Net's own predictor does from the file (its loader, its trainer's network, SimpleITK's
reading), in the CT's stored orientation and in a permuted and flipped one; a folder that would run
code, or that this member cannot serve faithfully, is refused and nothing is stored. (It serves on
Ray Serve beside a MONAI member in test_inference_service.)"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from atlasloop.cli.__main__ import main
from atlasloop.common.errors import InvalidInput
from atlasloop.common.objectstore import ObjectStore
from atlasloop.imaging.volume import load_nifti
from atlasloop.models.architectures import build, config
from atlasloop.models.bundles import pack, unpack
from atlasloop.models.checkpoints import state_dict_bytes
from atlasloop.models.nnunet import class_map, read_results_folder
from atlasloop.models.registry import ModelRegistry

from .nnunet_folder import PLANS, write_results_folder
from .reoriented import turned_copy

pytestmark = pytest.mark.integration


def _nnunet_predicts(folder, images, out):
    """nnU-Net's own predictor from the folder on image files: probabilities (classes, z, y, x)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=None)
    source = out / "in"
    source.mkdir()
    for name, path in images.items():
        shutil.copy(path, source / f"{name}_0000.nii.gz")
    (out / "out").mkdir()
    predictor.predict_from_files_sequential(str(source), str(out / "out"), save_probabilities=True, overwrite=True)
    return {name: np.load(out / "out" / f"{name}.npz")["probabilities"] for name in images}


def test_an_imported_nnunet_folder_predicts_the_real_ct_as_nnunet_does(registry, real_ct_dir, tmp_path, capsys):
    registry_, _ = registry
    folder = write_results_folder(tmp_path / "Dataset990_AtlasLoopTest" / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert main(["models", "import-nnunet", str(folder), "--name", "nnunet-abdomen", "--version", "v1"]) == 0
    printed = capsys.readouterr().out
    assert "folds 0, 1; liver->liver, spleen->spleen, left kidney->kidney_left, right kidney->kidney_right" in printed
    assert "classes left out (no organ of the project): lung" in printed
    manifest = registry_.manifest("nnunet-abdomen", "v1")
    assert manifest.kind == "nnunet" and manifest.config["kwargs"]["folds"] == ["0", "1"]
    member = registry_.load("nnunet-abdomen", "v1")  # from the registry: checksum, strict load of both folds
    assert member.runtime.predictor.allowed_mirroring_axes == (0, 1, 2)

    # the CT as stored (RAS), and the same scan with its axes permuted and two of them flipped
    stored = real_ct_dir / "example_ct_sm.nii.gz"
    images = {"stored": stored, "turned": turned_copy(stored, tmp_path / "turned.nii.gz")}
    theirs = _nnunet_predicts(folder, images, tmp_path)
    for name, path in images.items():
        ct = load_nifti(path)
        ours = member.runtime.probabilities(ct)
        assert ours.shape == (6, *ct.shape)
        np.testing.assert_allclose(ours, theirs[name].transpose(0, 3, 2, 1), rtol=0, atol=1e-5)
        organs = member.runtime.organ_probabilities(ct)
        assert sorted(organs) == ["kidney_left", "kidney_right", "liver", "spleen"]
        assert np.array_equal(organs["kidney_left"], ours[3]) and np.array_equal(organs["liver"], ours[1])


def test_a_folder_that_would_run_code_or_cannot_be_served_is_refused_and_nothing_is_stored(
    stack, unique, registry, tmp_path
):
    registry_, store = registry
    good = write_results_folder(tmp_path / "good", folds=(0,))

    def variant(name, change):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        change(folder)
        return folder

    def plans_with(mutate, **configuration):
        def change(folder):
            plans = json.loads(json.dumps(PLANS))
            mutate(plans["configurations"]["3d_fullres"]["architecture"])
            plans["configurations"]["3d_fullres"].update(configuration)
            (folder / "plans.json").write_text(json.dumps(plans))

        return change

    def dataset_with(**extra):
        def change(folder):
            dataset = json.loads((folder / "dataset.json").read_text())
            (folder / "dataset.json").write_text(json.dumps(dataset | extra))

        return change

    def pickled_code(folder):
        checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
        checkpoint["logging"]["hook"] = os.getcwd  # pickled by reference: loading would import and may call
        torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")

    refused = {
        "network class": plans_with(lambda a: a.update(network_class_name="os.system")),
        "not a Module class defined in dynamic_network_architectures": plans_with(  # a path that walks out
            lambda a: a.update(network_class_name="dynamic_network_architectures.architectures.unet.torch.hub.load")
        ),
        "building block": plans_with(lambda a: a["arch_kwargs"].update(nonlin="subprocess.Popen")),
        "without running code": pickled_code,
        "region-based": dataset_with(regions_class_order=[1, 2]),
        "cascade stage": plans_with(lambda a: None, previous_stage="3d_lowres"),
        "single-channel": dataset_with(channel_names={"0": "CT", "1": "PET"}),
        "consecutive": dataset_with(labels={"background": 0, "liver": 2}),
    }
    for reason, change in refused.items():
        folder = variant(reason.replace(" ", "-"), change)
        with pytest.raises(InvalidInput, match=reason):
            registry_.register_nnunet("nnunet-x", read_results_folder(folder), {1: "liver"}, version="v1")
    payload = read_results_folder(good)
    with pytest.raises(InvalidInput, match="not an organ of the project"):
        class_map(payload, {"liver": "brain"})
    with pytest.raises(InvalidInput, match="member name"):
        registry_.register_nnunet("unet", payload, class_map(payload), version="v1")  # one of ours
    assert store.list_keys("models/") == []

    # a set in which no member predicts an organ of the project is refused with the organs' names
    registry_.register_nnunet("nnunet-x", payload, class_map(payload), version="v1", preprocess=None)
    with pytest.raises(
        InvalidInput, match="no member of the set predicts aorta, gall_bladder, pancreas, postcava, stomach"
    ):
        registry_.create_set([("nnunet-x", "v1")])
    registry_.register("unet", "tiny", state_dict_bytes(build(config("unet", "tiny"))), version="v1")
    assert registry_.create_set([("unet", "v1"), ("nnunet-x", "v1")], version="ms-1").version == "ms-1"

    # and the set moves to an air-gapped site in one file, the nnU-Net member verified like the others
    site = ObjectStore(stack.s3_settings(bucket=f"nnsite-{unique}"))
    site.check_bucket()
    bundle = pack(registry_, "ms-1", tmp_path / "ms-1.tar")
    assert unpack(ModelRegistry(site), bundle, make_current=True).added == ["unet@v1", "nnunet-x@v1"]
    moved = ModelRegistry(site).load("nnunet-x", "v1")
    assert moved.runtime.classes == {1: "liver", 2: "spleen", 3: "kidney_left", 4: "kidney_right"}
