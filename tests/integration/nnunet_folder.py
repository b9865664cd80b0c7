"""An nnU-Net v2 results folder written here, as ``nnUNetv2_train`` writes one: ``plans.json`` and
``dataset.json`` in nnU-Net's format (a 3d_fullres PlainConvUNet, CT normalisation, 4 mm target
spacing, a 32^3 patch) and ``fold_N/checkpoint_final.pth`` with the keys nnUNetTrainer.save_checkpoint
writes: randomly initialised weights (nnU-Net's own He init), an SGD state, a training log of numpy
floats, the init args and the mirroring axes. No weights can be downloaded here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

LABELS = {"background": 0, "liver": 1, "spleen": 2, "left kidney": 3, "right kidney": 4, "lung": 5}
DATASET = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 2, "file_ending": ".nii.gz"}


def _resampling(seg: bool, order: int) -> dict:
    return {"is_seg": seg, "order": order, "order_z": 0, "force_separate_z": None}


ARCHITECTURE = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 3,
        "features_per_stage": [4, 8, 16],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [1, 1, 1],
        "n_conv_per_stage_decoder": [1, 1],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}
PLANS = {
    "dataset_name": "Dataset990_AtlasLoopTest",
    "plans_name": "nnUNetPlans",
    "original_median_spacing_after_transp": [3.0, 3.0, 3.0],
    "original_median_shape_after_transp": [112, 101, 122],
    "image_reader_writer": "SimpleITKIO",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {
        "3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2,
            "patch_size": [32, 32, 32],
            "median_image_size_in_voxels": [84, 76, 92],
            "spacing": [4.0, 4.0, 4.0],
            "normalization_schemes": ["CTNormalization"],
            "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": _resampling(False, 3),
            "resampling_fn_seg_kwargs": _resampling(True, 1),
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": _resampling(False, 1),
            "architecture": ARCHITECTURE,
            "batch_dice": True,
        }
    },
    "experiment_planner_used": "ExperimentPlanner",
    "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {
        "0": {
            "max": 1500.0,
            "mean": 60.0,
            "median": 55.0,
            "min": -1000.0,
            "percentile_00_5": -900.0,
            "percentile_99_5": 900.0,
            "std": 180.0,
        }
    },
}


def write_results_folder(out: Path, folds: tuple[int, ...] = (0, 1), plans: dict | None = None) -> Path:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans = plans or PLANS
    out.mkdir(parents=True, exist_ok=True)
    (out / "plans.json").write_text(json.dumps(plans, indent=2))
    (out / "dataset.json").write_text(json.dumps(DATASET, indent=2))
    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    for fold in folds:
        torch.manual_seed(fold)
        network = get_network_from_plans(
            architecture["network_class_name"],
            architecture["arch_kwargs"],
            architecture["_kw_requires_import"],
            1,
            len(LABELS),
            deep_supervision=True,  # as trained: the deep supervision heads hold no weights of their own
        )
        optimizer = torch.optim.SGD(network.parameters(), 0.01, momentum=0.99, nesterov=True)
        (out / f"fold_{fold}").mkdir(exist_ok=True)
        checkpoint = {
            "network_weights": network.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "grad_scaler_state": None,
            "logging": {
                "mean_fg_dice": [np.float64(0.5)],
                "ema_fg_dice": [np.float64(0.5)],
                "dice_per_class_or_region": [[np.float64(0.4)] * 5],
                "train_losses": [np.float32(-0.3)],
                "val_losses": [np.float32(-0.2)],
                "lrs": [0.01],
                "epoch_start_timestamps": [1.0],
                "epoch_end_timestamps": [2.0],
            },
            "_best_ema": np.float64(0.5),
            "current_epoch": 1000,
            "init_args": {
                "plans": plans,
                "configuration": "3d_fullres",
                "fold": fold,
                "dataset_json": DATASET,
                "device": torch.device("cpu"),
            },
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": (0, 1, 2),
        }
        torch.save(checkpoint, out / f"fold_{fold}" / "checkpoint_final.pth")
    return out
