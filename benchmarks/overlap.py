"""Sliding-window overlap: what each setting costs and what it changes, on a trained model.

A tiny U-Net is trained here (the demo's recipe: 3 mm grid, 48-voxel crops, 300 steps at 3e-3) on
six synthetic cases of the labelled sites, then predicts two cases of the other sites at overlap
0.25, 0.5 and 0.75 (the reference's). Reported side by side: seconds per case (median), windows
per case, mean organ Dice against the truth, and agreement (Dice of the label maps) with 0.75.
Backs docs/adr/0003-sliding-window-overlap.md.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.metrics import dice
from atlasloop.imaging.preprocess import PreprocessConfig, labels_to_model, preprocess_image
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.models.architectures import build, config
from atlasloop.models.ensemble import InferenceConfig, ensemble_labels
from atlasloop.models.records import LoadedModel, Manifest
from atlasloop.training.learning import Example, Sampler, train_epochs
from atlasloop.training.recipe import Recipe
from benchmarks.machine import median

GRID = PreprocessConfig(spacing_mm=3.0)
OVERLAPS = (0.25, 0.5, 0.75)


def _example(site: str, seed: int) -> Example:
    ct, labels = render(np.random.default_rng([seed, 0]), SITES[site], 3.0)  # full-size bodies: several windows
    pre = preprocess_image(ct, GRID)
    return Example(f"{site}{seed}", "truth", pre.image.astype(np.float16), labels_to_model(labels, pre.grid))


def _windows(shape: tuple[int, ...], patch: int, overlap: float) -> int:
    step = max(1, int(patch * (1 - overlap)))
    return int(np.prod([max(1, int(np.ceil((max(n, patch) - patch) / step)) + 1) for n in shape]))


def overlap() -> list[str]:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    train = [_example(site, seed) for seed in range(3) for site in ("A", "C")]
    held = [_example(site, 10 + seed) for seed, site in enumerate(("B", "D"))]
    cfg = config("unet", "tiny")
    module = build(cfg)
    recipe = Recipe(epochs=25, steps_per_epoch=12, batch_size=2, crop=48, learning_rate=3e-3)
    started = time.perf_counter()
    train_epochs(module, Sampler(train, [], recipe, seed=0), recipe)
    trained_s = time.perf_counter() - started
    manifest = Manifest("unet", "bench", cfg.as_json(), {}, 3.0, (GRID.hu_min, GRID.hu_max), "", 0)
    model = LoadedModel("unet", "bench", cfg, module.eval(), manifest)
    labels: dict[float, list[np.ndarray]] = {}
    lines = [
        f"tiny U-Net trained here: {recipe.epochs * recipe.steps_per_epoch} steps in {trained_s:.0f} s; "
        f"held-out cases {[e.labels.shape for e in held]} on the 3 mm grid, patch {cfg.patch}",
        "overlap | s/case (median) | windows/case | mean organ Dice vs truth | agreement with 0.75",
    ]
    timings: dict[float, list[float]] = {}
    for value in OVERLAPS:
        labels[value], timings[value] = [], []
        for example in held:
            started = time.perf_counter()
            labels[value].append(
                ensemble_labels(
                    [model], example.image.astype(np.float32), InferenceConfig(overlap=value, sw_batch_size=2)
                )
            )
            timings[value].append(time.perf_counter() - started)
    for value in OVERLAPS:
        truth_dice = np.mean(
            [
                dice(pred == k, e.labels == k)
                for pred, e in zip(labels[value], held, strict=True)
                for k in ORGANS
                if (e.labels == k).any()
            ]
        )
        agreement = np.mean(
            [
                dice(a == k, b == k)
                for a, b in zip(labels[value], labels[0.75], strict=True)
                for k in ORGANS
                if (b == k).any()
            ]
        )
        windows = median([_windows(e.labels.shape, cfg.patch, value) for e in held])
        lines.append(f"{value:.2f} | {median(timings[value]):.2f} | {windows:.0f} | {truth_dice:.4f} | {agreement:.4f}")
    ratio = median(timings[0.75]) / median(timings[0.25])
    lines.append(f"0.75 costs {ratio:.1f}x the time of 0.25 on this machine")
    return lines
