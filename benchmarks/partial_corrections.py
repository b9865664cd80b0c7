"""How to train on guided revisions (docs/adr/0008-training-on-partial-corrections.md).

``python -m benchmarks.partial_corrections RUN_DIR`` on a demo stack left running by
``python -m atlasloop.loop demo --keep --run-dir RUN_DIR --out OUT`` (its cohort is ``OUT/cohort``):
the current model set is fine-tuned, member by member, the way a run would, on the human label
versions the demo approved, with each way of treating the part of a revision no one verified, and
every candidate is scored on the new-site cases no one revised, against their ground truth.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atlasloop.common import layout
from atlasloop.common.objectstore import ObjectStore
from atlasloop.devstack.ports import Ports
from atlasloop.devstack.stack import Stack
from atlasloop.imaging.layout import read_case
from atlasloop.imaging.preprocess import labels_to_model, preprocess_image
from atlasloop.imaging.volume import Volume, load_nifti
from atlasloop.loop.config import LABELLED_SITES
from atlasloop.models.ensemble import InferenceConfig
from atlasloop.models.records import LoadedModel, shared_preprocess
from atlasloop.models.registry import ModelRegistry
from atlasloop.training.gate import evaluate, mean_dice, overall
from atlasloop.training.learning import Example, Sampler, train_epochs
from atlasloop.training.recipe import Recipe
from atlasloop.training.verified import verified_mask


def _volume(store: ObjectStore, key: str) -> Volume:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii.gz"
        path.write_bytes(store.get_bytes(key))
        return load_nifti(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.partial_corrections")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--cohort", type=Path, default=Path("reports/demo/cohort"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    store = ObjectStore(Stack(args.run_dir, Ports.for_demo()).s3_settings())
    registry = ModelRegistry(store)
    base = registry.load_set(registry.current())
    grid_config = shared_preprocess([m.manifest for m in base])
    sites = {e["case"]: e["site"] for e in _cohort_entries(args.cohort)}

    def example(case_id: str, labels: Volume, verified_regions: list[dict] | None = None) -> Example:
        pre = preprocess_image(load_nifti(args.cohort / case_id / "ct.nii.gz"), grid_config)
        mask = verified_mask(verified_regions, pre.grid) if verified_regions is not None else None
        return Example(case_id, "x", pre.image.astype(np.float32), labels_to_model(labels, pre.grid), mask)

    revised, truth_of_revised, per_class, replay, unrevised = [], [], [], [], []
    for case_id, site in sorted(sites.items()):
        truth = read_case(args.cohort / case_id).labels
        assert truth is not None
        if site in LABELLED_SITES:
            replay.append(example(case_id, truth))
            continue
        metas = [store.get_json(k) for k in store.list_keys(f"cases/{case_id}/labels/") if k.endswith(".json")]
        human = sorted((m for m in metas if m["source"] == "human"), key=lambda m: m["created_at"])
        if not human:
            unrevised.append(example(case_id, truth))
            continue
        parent = next(m for m in metas if m["version"] == human[-1]["parent_version"])
        regions = store.get_json(layout.scores_key(case_id, parent["model_set"], "reference"))["regions"]
        label = _volume(store, human[-1]["key"])
        revised.append(example(case_id, label))
        per_class.append(example(case_id, label, regions))
        truth_of_revised.append(example(case_id, truth))
    replay = replay[2:]  # as a run: the first two are the frozen held-out set's
    config = InferenceConfig(overlap=0.25, sw_batch_size=2)
    before = evaluate(base, unrevised, config)
    print(f"{len(revised)} revised, {len(replay)} replay, {len(unrevised)} unrevised new-site cases to score")
    print(f"| base set | {mean_dice(before):.4f} | {overall(before):.4f} | |")
    trials = [
        ("replay only (no revisions)", [], "whole", 3e-4),
        ("whole revised labels", revised, "whole", 3e-4),
        ("per-class masked (verified regions only)", per_class, "masked", 3e-4),
        ("per-class masked, lr 1e-3", per_class, "masked", 1e-3),
        ("replay only, lr 1e-3", [], "whole", 1e-3),
        ("ground truth of the revised cases (upper bound), lr 1e-3", truth_of_revised, "whole", 1e-3),
    ]
    print("| training on | mean Dice (unrevised new-site cases) | overall | seconds |")
    print("|---|---|---|---|")
    for name, examples, partial, rate in trials:
        scores, started = [], time.perf_counter()
        for seed in args.seeds:
            recipe = Recipe(
                epochs=4,
                steps_per_epoch=12,
                batch_size=2,
                crop=48,
                learning_rate=rate,
                partial_labels=partial,
                seed=seed,
            )
            members = []
            for member in base:
                module = copy.deepcopy(member.module)
                sampler = Sampler(examples, replay, recipe, seed=seed)
                train_epochs(module, sampler, recipe, learning_rate=recipe.learning_rate_of(member.architecture))
                members.append(LoadedModel(member.architecture, "trial", member.config, module, member.manifest))
            scores.append(evaluate(members, unrevised, config))
        dice = [mean_dice(s) for s in scores]
        print(
            f"| {name} | {np.mean(dice):.4f} ± {np.std(dice):.4f} | {np.mean([overall(s) for s in scores]):.4f} | "
            f"{(time.perf_counter() - started) / len(args.seeds):.0f} |"
        )
    return 0


def _cohort_entries(cohort: Path) -> list[dict]:
    import json

    return list(json.loads((cohort / "cohort.json").read_text())["cases"])


if __name__ == "__main__":
    raise SystemExit(main())
