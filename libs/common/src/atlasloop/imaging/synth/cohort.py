"""Write a synthetic cohort in the AbdomenAtlas layout, with a manifest of who is from where."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from atlasloop.imaging.layout import AtlasCase, write_case
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES

MANIFEST = "cohort.json"


def generate_cohort(
    out: Path,
    cases: int,
    seed: int,
    sites: Sequence[str] = tuple(SITES),
    spacing_mm: float = 3.0,
    masks: bool = True,
    scale: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Cases ``case_00000``... round-robin over ``sites``; deterministic for (seed, case index)."""
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise ValueError(f"unknown sites {unknown}; known: {', '.join(SITES)}")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(cases):
        site = SITES[sites[index % len(sites)]]
        rng = np.random.default_rng([seed, index])
        ct, labels = render(rng, site, spacing_mm, scale=scale)
        name = f"case_{index:05d}"
        write_case(AtlasCase(name, ct, labels), out, masks=masks)
        present = sorted(int(v) for v in np.unique(labels.array) if v)
        entries.append(
            {
                "case": name,
                "site": site.name,
                "seed": seed,
                "index": index,
                "shape": list(ct.shape),
                "spacing_mm": list(ct.spacing),
                "labels_present": present,
            }
        )
        if progress is not None:
            progress(index + 1, cases)
    manifest = {
        "seed": seed,
        "spacing_mm": spacing_mm,
        "scale": scale,
        "sites": {s: asdict(SITES[s]) for s in sites},
        "cases": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return entries
