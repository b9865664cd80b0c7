"""The demo's report: Markdown with PNG plots, every number taken from the run's ``results.json``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atlasloop.imaging.labels import ORGANS

STRATEGIES = {
    "attention": "attention-guided (the method, reference scoring)",
    "improved": "attention-guided, improved scoring",
    "improved_uncalibrated": "attention-guided, improved scoring, the gate on the raw expected Dice",
    "improved_ungated": "attention-guided, improved scoring without the expected-Dice gate",
    "uncertainty": "uncertainty only",
    "random": "random cases, full read",
    "oracle": "oracle: boxes around the true errors that matter (perfect detection, for comparison; not a strategy)",
}


def _grid_dice(curve: dict, grid: np.ndarray) -> np.ndarray:
    minutes, dice = np.array(curve["minutes"]), np.array(curve["dice"])
    return np.array([dice[minutes <= m + 1e-9][-1] for m in grid])


def strategy_table(comparison: list[dict], budgets: list[float]) -> tuple[list[str], dict]:
    by = {
        s: [c for c in comparison if c["strategy"] == s]
        for s in STRATEGIES
        if any(c["strategy"] == s for c in comparison)
    }
    stats = {}
    rows = [
        "| strategy | " + " | ".join(f"Dice at {b:.0f} min" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for strategy, curves in by.items():
        values = np.array([[_grid_dice(c, np.array([b]))[0] for b in budgets] for c in curves])
        stats[strategy] = values
        cells = [f"{values[:, i].mean():.3f} ± {values[:, i].std():.3f}" for i in range(len(budgets))]
        rows.append(f"| {STRATEGIES[strategy]} | " + " | ".join(cells) + " |")
    return rows, stats


def mean_gap(comparison: list[dict], a: str, b: str, until: float, points: int = 200) -> np.ndarray:
    """Per seed, the mean over budgets in [0, ``until``] of strategy ``a``'s Dice minus ``b``'s."""
    grid = np.linspace(0, until, points)
    seeds = sorted({c["seed"] for c in comparison})
    pick = {(c["strategy"], c["seed"]): c for c in comparison}
    return np.array([(_grid_dice(pick[a, s], grid) - _grid_dice(pick[b, s], grid)).mean() for s in seeds])


def plot_strategies(comparison: list[dict], budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, max(max(c["minutes"]) for c in comparison), 200)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for strategy, label in STRATEGIES.items():
        curves = np.array([_grid_dice(c, grid) for c in comparison if c["strategy"] == strategy])
        if not len(curves):  # a results.json of before the strategy was compared
            continue
        ax.plot(grid, curves.mean(axis=0), label=label)
        ax.fill_between(grid, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
    ax.axvline(budget, color="grey", linestyle=":", label="one round's minutes")
    ax.set_xlabel("human minutes (effort model)")
    ax.set_ylabel("dataset Dice vs ground truth")
    ax.set_title("Label quality for the same human minutes (band: min-max over seeds)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_rounds(rounds: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    organs = [o for o in ORGANS.values() if any(o in r["quality"] for r in rounds)]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    width = 0.8 / len(rounds)
    for i, r in enumerate(rounds):
        ax.bar(
            np.arange(len(organs)) + i * width,
            [r["quality"].get(o, {}).get("dice", 0) for o in organs],
            width,
            label=f"after round {r['round']}" if r["round"] else "before round 1",
        )
    ax.set_xticks(np.arange(len(organs)) + width * (len(rounds) - 1) / 2, organs, rotation=30, fontsize=8)
    ax.set_ylabel("Dice of the dataset's labels")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: dict, out: Path) -> Path:
    rounds, comparison, budget = results["snapshots"], results["comparison"], results["budget_min"]
    plot_strategies(comparison, budget, out / "strategies.png")
    plot_rounds(rounds, out / "rounds.png")
    budgets = [budget, 2 * budget]
    table, stats = strategy_table(comparison, budgets)
    gap = stats["attention"][:, 0] - stats["random"][:, 0]
    gap2 = stats["attention"][:, 1] - stats["random"][:, 1]
    gap_unc = stats["attention"][:, 0] - stats["uncertainty"][:, 0]
    gap_imp = stats["improved"][:, 0] - stats["attention"][:, 0]
    area = mean_gap(comparison, "attention", "random", 2 * budget)
    seeds = results["config"]["seeds"]
    effort = results["effort"]
    unlabelled = results["cases"]["unlabelled"]
    spent = sum(r["minutes"] for r in rounds)
    revised = sum(len(r["revised"]) for r in rounds)
    scratch = unlabelled * len(ORGANS) * effort["scratch_organ"]
    lines = [
        "# AtlasLoop demo report",
        "",
        f"Generated by `make demo` from this run's `results.json`. Synthetic cohort: "
        f"{results['cases']['labelled']} labelled cases (sites A, C: portal venous, non-contrast) and "
        f"{unlabelled} cases to label (sites B, D: arterial; portal with a narrow field of view and 5 mm "
        f"slices), body scale {results['config']['scale']}. "
        f"Ensemble: tiny U-Net, DynUNet and SegResNet on a {results['config']['model_spacing_mm']:g} mm grid, "
        f"trained here on CPUs. Wall time "
        f"{results['timings']['total']:.0f} s after the stack was up.",
        "",
        "## Label quality per round",
        "",
        "Dice and NSD (2 mm) of each case's current label (human revision if any, else the newest AI label) "
        "against the ground truth, averaged over cases that contain the organ.",
        "",
        "| organ | "
        + " | ".join(
            f"{'after round ' + str(r['round']) if r['round'] else 'before round 1'} Dice / NSD" for r in rounds
        )
        + " |",
        "|---|" + "---|" * len(rounds),
    ]
    for organ in ORGANS.values():
        cells = [
            f"{r['quality'][organ]['dice']:.3f} / {r['quality'][organ]['nsd']:.3f}" if organ in r["quality"] else "-"
            for r in rounds
        ]
        lines.append(f"| {organ} | " + " | ".join(cells) + " |")
    lines += [
        "| **dataset mean Dice** | " + " | ".join(f"**{r['mean_dice']:.3f}**" for r in rounds) + " |",
        "",
        "![Dice per organ per round](rounds.png)",
        "",
        "## Does the loop close?",
        "",
        "The models' own labels on the new-site cases no human has revised yet (mean Dice against the truth), "
        "before each round's training run and after it (re-predicted by the new set when the gate published it).",
        "",
        "| round | human minutes | run | published | model Dice on unrevised cases before -> after |",
        "|---|---|---|---|---|",
        *[
            f"| {r['round']} | {r['human_minutes']:.1f} | {r['run'].get('run_id', '')} | "
            f"{'yes' if r['published'] else 'no'} | {_num(r['model_dice_unrevised_before'])} -> "
            f"{_num(r['model_dice_unrevised_after'])} |"
            for r in results["rounds"]
        ],
        "",
        "## Rounds",
        "",
        "| round | model set used | cases revised | human minutes | error tags | training run | gate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rounds[:-1]:  # each record holds the state a round started from, and what it did
        run = r["run"]
        lines.append(
            f"| {r['round'] + 1} | {r['model_set']} | {', '.join(r['revised'])} | {r['minutes']:.1f} | "
            f"{', '.join(f'{k}: {v}' for k, v in sorted(r['tags'].items()))} | {run.get('run_id', '')} "
            f"({run.get('seconds', 0):.0f} s) | {run.get('state', '')}: {run.get('reason', '')} |"
        )
    initial = results["initial_run"]
    lines += [
        "",
        f"Initial training on the labelled sites: {initial['state']} in {initial['seconds']:.0f} s; "
        f"held-out mean Dice {np.mean(list(initial['current'].values()) or [0]):.3f} (untrained) -> "
        f"{np.mean(list(initial['candidate'].values()) or [0]):.3f}.",
        "",
        "## Revision strategies at the same human minutes",
        "",
        f"All strategies start from the same AI labels (before round 1) and use the same simulated annotator; "
        f"seeds {seeds} change the random order and the regions the annotator overlooks (10%). "
        f"One round of the loop spends {budget:.1f} minutes.",
        "",
        *table,
        "",
        f"**Attention-guided minus random at one round's minutes: {gap.mean():+.3f} ± {gap.std():.3f} "
        f"Dice (mean ± std over {len(seeds)} seeds; per seed {', '.join(f'{g:+.3f}' for g in gap)}).** "
        f"At two rounds' minutes: {gap2.mean():+.3f} ± {gap2.std():.3f}; averaged over every budget from 0 to "
        f"two rounds' minutes: {area.mean():+.3f} ± {area.std():.3f}. "
        f"Attention minus uncertainty-only at one round: {gap_unc.mean():+.3f} ± {gap_unc.std():.3f}; "
        f"improved minus reference scoring: {gap_imp.mean():+.3f} ± {gap_imp.std():.3f}.",
        "",
        "![Minutes vs Dice](strategies.png)",
        "",
        "## Attention against the true errors",
        "",
        "Voxel level, on the AI labels before round 1: sensitivity = share of wrongly labelled voxels inside "
        "an attention region; precision = share of region voxels that are wrong.",
        "",
        "| regions from | sensitivity | precision | error voxels | region voxels |",
        "|---|---|---|---|---|",
    ]
    for name, levels in results["detection"]["by_mode"].items():
        d = levels["voxel"]
        lines.append(
            f"| {name} | {d['sensitivity']:.3f} | {d['precision']:.3f} | {d['error_voxels']} | {d['box_voxels']} |"
        )
    lines += detection_lines(results["detection"])
    lines += efficiency_lines(results["efficiency"])
    lines += calibration_lines([results["initial_run"], *(r["run"] for r in results["rounds"])])
    lines += release_lines(results.get("releases", []))
    lines += ["", "## Error tags (tracking statistics)", "", "| tag | count |", "|---|---|"]
    lines += [f"| {tag} | {n} |" for tag, n in sorted(results["tag_counts"].items())]
    lines += [
        "",
        "## Time saved",
        "",
        f"Human minutes spent: {spent:.1f} on {revised} of {unlabelled} cases. Labelling the {unlabelled} cases "
        f"from scratch: {unlabelled} x {len(ORGANS)} organs x {effort['scratch_organ']:.0f} min = "
        f"{scratch:.0f} min. Saved: {scratch - spent:.0f} min ({(1 - spent / scratch) * 100:.1f}%), "
        f"at dataset Dice {rounds[-1]['mean_dice']:.3f} instead of a full manual read.",
        "",
        "Assumptions (effort model, `atlasloop.loop.annotator`): opening a case "
        f"{effort['open_case']} min, inspecting one organ on one slice {effort['inspect_slice']} min, "
        f"correcting one organ on one slice {effort['edit_slice']} min; from scratch "
        f"{effort['scratch_organ']} min per organ (the published 30-60). The annotator replaces labels with the "
        "ground truth where it looks, so its corrections are perfect where made.",
        "",
        "## Timings",
        "",
        "| step | seconds |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} |" for k, v in results["timings"].items()]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def detection_lines(detection: dict) -> list[str]:
    d = detection["definitions"]
    lines = [
        "",
        f"At the levels a person acts on (`atlasloop.loop.judging`): an organ of a case holds an error that "
        f"matters when its AI label's Dice is below {d['matters_dice']:.2f}; it is flagged when it has an "
        f"attention region. A region is correct when it holds a true error component of its organ; a component "
        f"counts from {d['min_error_ml']} mL and is found when a region of its organ overlaps it.",
        "",
        "| regions from | case-organ sensitivity | case-organ precision | region sensitivity | region precision |",
        "|---|---|---|---|---|",
    ]
    for name, levels in detection["by_mode"].items():
        co, rg = levels["case_organ"], levels["region"]
        lines.append(
            f"| {name} | {_num(co['sensitivity'])} ({co['found']}/{co['relevant']}) | "
            f"{_num(co['precision'])} ({co['correct']}/{co['flagged']}) | "
            f"{_num(rg['sensitivity'])} ({rg['found']}/{rg['relevant']}) | "
            f"{_num(rg['precision'])} ({rg['correct']}/{rg['flagged']}) |"
        )
    lines += ["", "The published method reports sensitivity 0.78 and precision 0.83 for its attention maps."]
    offsets = detection.get("expected_dice_offsets") or {}
    lines += [
        "",
        "The improved scoring's gate adds the judged set's expected-Dice offsets (median of true minus expected "
        "Dice on its gate's held-out cases, `atlasloop.method.improved`): "
        + (", ".join(f"{organ} {value:+.3f}" for organ, value in sorted(offsets.items())) or "none fitted")
        + "; *improved, uncalibrated* gates on the raw value.",
    ]
    return lines


def efficiency_lines(efficiency: dict) -> list[str]:
    per_seed = efficiency.get("per_seed", [])
    lines = [
        "",
        "## Minutes to random's Dice",
        "",
        f"For each seed, the minutes each strategy needs to reach the dataset Dice that random selection reaches "
        f"with its whole budget ({efficiency['budget_min']:.1f} min); median over seeds. A strategy whose whole "
        "plan ends below that Dice counts the minutes of its whole plan, so its figures are marked as lower "
        "bounds (>).",
        "",
        "| strategy | median minutes | median ratio to random | seeds that reached it |",
        "|---|---|---|---|",
    ]
    ratios = efficiency.get("median_ratios", {})
    for name, minutes in efficiency["median_minutes"].items():
        reached = sum(bool(row["reached"].get(name)) for row in per_seed)
        bound = ">" if reached < len(per_seed) else ""
        lines.append(
            f"| {STRATEGIES.get(name, name)} | {bound}{minutes:.1f} | {bound}{_num(ratios.get(name))} "
            f"| {reached} of {len(per_seed)} |"
        )
    ratio, spread = efficiency["minutes_ratio_attention_vs_random"], efficiency["ratio_spread"]
    attention_short = any(not row["reached"].get("attention") for row in per_seed)
    lines += [
        "",
        f"**Minutes attention needs / minutes random needs: {'at least ' if attention_short else ''}{_num(ratio)}** "
        "(median over seeds" + (f"; range {spread[0]:.3f}-{spread[1]:.3f})" if spread else ")") + "; below 1 is "
        "better. The oracle revises boxes around every error that matters, the cases with most wrong voxels "
        "first: perfect detection, not the cheapest plan. It edits every organ below the Dice that matters, "
        "however little Dice the edit buys, so a strategy that skips such organs can need fewer minutes "
        "(docs/adr/0010, addendum).",
    ]
    return lines


def release_lines(releases: list[dict]) -> list[str]:
    """The dataset releases the run froze, each written in every format and read back."""
    if not releases:
        return []
    lines = [
        "",
        "## Dataset releases",
        "",
        "Frozen by tracking (per case the best label by provenance: approved human revision, then original, "
        "then AI), written by `atlasloop.client.releases` in every format and read back by the format's rules "
        "(`atlasloop.imaging.dataset_formats.verify`).",
        "",
        "| release | after | cases | label sources | formats read back | changelog | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in releases:
        clean = [fmt for fmt, f in r["formats"].items() if not f["problems"]]
        changelog = f"{len(r['changes'])} cases"
        if "changelog_lists_exactly_the_revised_cases" in r:
            exact = r["changelog_lists_exactly_the_revised_cases"]
            changelog += f" ({'exactly' if exact else 'NOT exactly'} the {len(r['revised_since_previous'])} revised)"
        sources = ", ".join(f"{k}: {v}" for k, v in sorted(r["sources"].items()))
        lines.append(
            f"| {r['name']} | {r['previous'] or '-'} | {r['cases']} | {sources} | {', '.join(clean)} | "
            f"{changelog} | {r['seconds']:.0f} |"
        )
    return lines


def calibration_lines(runs: list[dict]) -> list[str]:
    """Each published run's temperature scaling: the calibration error before, with every fitted
    temperature, and as published (only the temperatures measured to help out of sample are
    applied), voxel-weighted over members and organs, on the cases the gate kept aside."""
    rows = []
    for run in runs:
        fits = run.get("calibration") or []
        if not fits:
            continue
        weight = sum(f["voxels"] for f in fits)
        before = sum(f["ece_before"] * f["voxels"] for f in fits) / weight
        fitted = sum(f["ece_after"] * f["voxels"] for f in fits) / weight
        published = sum((f["ece_after"] if f.get("applied") else f["ece_before"]) * f["voxels"] for f in fits) / weight
        held_out = all(f["held_out"] for f in fits)
        applied = sum(1 for f in fits if f.get("applied"))
        temps = [f["temperature"] for f in fits]
        rows.append(
            f"| {run['run_id']} | {applied} of {len(fits)} | {min(temps):.2f}-{max(temps):.2f} | {before:.4f} | "
            f"{fitted:.4f} | {published:.4f} | {'two folds by case' if held_out else 'in sample (one case)'} |"
        )
    if not rows:
        return []
    return [
        "",
        "## Calibration of the published members",
        "",
        "Temperature scaling per member and organ (`atlasloop.models.calibration`), fitted on the cases "
        "each run's gate kept aside; expected calibration error (15 bins) around the organs, "
        "voxel-weighted over members and organs. A temperature is applied only where its benefit was "
        "measured out of sample and the error fell; elsewhere T = 1.",
        "",
        "| run | fits applied | temperatures | ECE before | ECE, every fit | ECE as published | measured |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
