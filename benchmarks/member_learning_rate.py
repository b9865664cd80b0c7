"""One learning rate for every member, or one per architecture: what the demo's first training
gives each tiny member. Backs docs/adr/0011-learning-rate-per-architecture.md.

The demo's cohort (seed 7, half-size bodies, 3 mm grid) and its first run's recipe (360 steps of
two 48-voxel crops, AdamW at 3e-3): every member variant trains on the eight cases of the labelled
sites from the same initial weights (two seeds), then predicts six cases of the new sites. Reported
side by side: training seconds, the last epoch's loss, mean organ Dice against the truth, the
organs the member never predicts (Dice 0 on every case) and the smaller organs' Dice.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atlasloop.imaging.labels import ORGANS
from atlasloop.imaging.layout import read_case
from atlasloop.imaging.metrics import dice
from atlasloop.imaging.preprocess import PreprocessConfig, labels_to_model, preprocess_image
from atlasloop.imaging.synth.cohort import generate_cohort
from atlasloop.models.architectures import build, config
from atlasloop.models.ensemble import InferenceConfig, ensemble_labels
from atlasloop.models.records import LoadedModel, Manifest
from atlasloop.training.learning import Example, Sampler, train_epochs
from atlasloop.training.recipe import Recipe

GRID = PreprocessConfig(spacing_mm=3.0)
SITES = ("A", "C") * 4 + ("B", "D") * 3  # the demo's labelled sites, then the new ones
SMALL = ("aorta", "kidney_left", "kidney_right", "pancreas", "gall_bladder")
SEEDS = (2, 5)  # 2: the bootstrap set's SegResNet seed


def _examples(folder: Path) -> tuple[list[Example], list[Example]]:
    entries = generate_cohort(folder, len(SITES), 7, sites=list(SITES), scale=0.5)
    train: list[Example] = []
    held: list[Example] = []
    for entry in entries:
        case = read_case(folder / entry["case"])
        assert case.labels is not None
        pre = preprocess_image(case.ct, GRID)
        example = Example(entry["case"], "truth", pre.image.astype(np.float16), labels_to_model(case.labels, pre.grid))
        (train if entry["site"] in ("A", "C") else held).append(example)
    return train, held


def _trial(architecture: str, scale: float, seed: int, train: list[Example], held: list[Example]) -> dict:
    recipe = Recipe(
        epochs=30,
        steps_per_epoch=12,
        batch_size=2,
        crop=48,
        learning_rate=3e-3,
        learning_rate_scale={architecture: scale},
    )
    cfg = config(architecture, "tiny")
    torch.manual_seed(seed)
    module = build(cfg)
    started = time.perf_counter()
    losses = train_epochs(
        module, Sampler([], train, recipe, seed=0), recipe, learning_rate=recipe.learning_rate_of(architecture)
    )
    seconds = time.perf_counter() - started
    manifest = Manifest(architecture, "bench", cfg.as_json(), {}, 3.0, (GRID.hu_min, GRID.hu_max), "", 0)
    model = LoadedModel(architecture, "bench", cfg, module.eval(), manifest)
    per_organ: dict[str, list[float]] = {organ: [] for organ in ORGANS.values()}
    for example in held:
        pred = ensemble_labels(
            [model], example.image.astype(np.float32), InferenceConfig(overlap=0.25, sw_batch_size=2)
        )
        for label, organ in ORGANS.items():
            if (example.labels == label).any():
                per_organ[organ].append(dice(pred == label, example.labels == label))
    means = {organ: float(np.mean(v)) for organ, v in per_organ.items() if v}
    return {
        "seconds": seconds,
        "loss": losses[-1],
        "dice": float(np.mean(list(means.values()))),
        "never": [organ for organ, v in per_organ.items() if v and max(v) == 0.0],
        "small": means,
    }


def learning_rates() -> list[str]:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="atlasloop-lr-") as folder:
        train, held = _examples(Path(folder))
    lines = [
        f"{len(train)} labelled-site cases, {len(held)} new-site cases; 360 steps, crop 48, base rate 3e-3",
        "member | rate | seed | train s | last loss | mean Dice | never predicted | " + " | ".join(SMALL),
    ]
    for architecture, scale in (("segresnet", 1.0), ("segresnet", 3.0), ("unet", 1.0)):
        for seed in SEEDS if architecture == "segresnet" else SEEDS[:1]:
            r = _trial(architecture, scale, seed, train, held)
            small = " | ".join(f"{r['small'].get(o, float('nan')):.3f}" for o in SMALL)
            lines.append(
                f"{architecture} | {3e-3 * scale:.0e} | {seed} | {r['seconds']:.0f} | {r['loss']:.3f} | "
                f"{r['dice']:.3f} | {', '.join(r['never']) or '-'} | {small}"
            )
    return lines
