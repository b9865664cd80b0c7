"""A MONAI bundle written here in the model zoo's layout (``configs/metadata.json``,
``configs/inference.json``, ``models/model.pt``), its inference configuration as the zoo's CT
segmentation bundles write theirs: expressions for the device, the dataset and the run, a
SupervisedEvaluator with a CheckpointLoader, preprocessing to RAS at 4 mm with an HU window, a
sliding-window inferer, softmax, Invertd back to the image, argmax and SaveImaged. A small UNet,
randomly initialised (no weights can be downloaded here)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHANNELS = {"0": "background", "1": "liver", "2": "spleen", "3": "left kidney", "4": "colon"}
NETWORK = {
    "_target_": "UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": len(CHANNELS),
    "channels": [8, 16, 32],
    "strides": [2, 2],
    "num_res_units": 1,
    "norm": "batch",
}
INFERENCE = {
    "imports": ["$import glob", "$import os"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "dataset_dir": "/workspace/data",
    "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": NETWORK,
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [4.0, 4.0, 4.0], "mode": "bilinear"},
            {
                "_target_": "ScaleIntensityRanged",
                "keys": "image",
                "a_min": -175,
                "a_max": 250,
                "b_min": 0.0,
                "b_max": 1.0,
                "clip": True,
            },
            {"_target_": "EnsureTyped", "keys": "image"},
        ],
    },
    "dataset": {
        "_target_": "Dataset",
        "data": "$[{'image': i} for i in @datalist]",
        "transform": "@preprocessing",
    },
    "dataloader": {
        "_target_": "DataLoader",
        "dataset": "@dataset",
        "batch_size": 1,
        "shuffle": False,
        "num_workers": 0,
    },
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2, "overlap": 0.5},
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "image",
                "nearest_interp": False,
                "to_tensor": True,
            },
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {
                "_target_": "SaveImaged",
                "keys": "pred",
                "output_dir": "@output_dir",
                "output_postfix": "seg",
                "separate_folder": False,
                "resample": False,
            },
        ],
    },
    "handlers": [
        {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
        }
    ],
    "evaluator": {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": "@dataloader",
        "network": "@network",
        "inferer": "@inferer",
        "postprocessing": "@postprocessing",
        "val_handlers": "@handlers",
        "amp": False,
    },
    "initialize": ["$monai.utils.set_determinism(seed=123)"],
    "run": ["$@evaluator.run()"],
}
METADATA = {
    "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
    "version": "0.1.0",
    "name": "AtlasLoop test CT segmentation",
    "monai_version": "1.6.1",
    "pytorch_version": "2.13.0",
    "network_data_format": {
        "inputs": {
            "image": {"type": "image", "format": "hounsfield", "num_channels": 1, "spatial_shape": [32, 32, 32]}
        },
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 5, "channel_def": CHANNELS}},
    },
}


def write_bundle(out: Path, seed: int = 0, inference: dict | None = None) -> Path:
    from monai.bundle import ConfigParser

    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    (out / "configs" / "inference.json").write_text(json.dumps(inference or INFERENCE, indent=2))
    (out / "configs" / "metadata.json").write_text(json.dumps(METADATA, indent=2))
    torch.manual_seed(seed)
    network = ConfigParser({"network_def": NETWORK}).get_parsed_content("network_def")
    with torch.no_grad():  # batch norm statistics away from their defaults, as after training
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(network.state_dict(), out / "models" / "model.pt")
    return out
