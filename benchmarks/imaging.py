"""Imaging-core benchmarks: cohort generation speed, preprocessing time and memory at full size,
and our surface metrics against MONAI's on the same masks (side by side, one process)."""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

from atlasloop.imaging import metrics
from atlasloop.imaging.preprocess import preprocess_image, to_native
from atlasloop.imaging.synth.cohort import generate_cohort
from atlasloop.imaging.volume import Volume
from benchmarks.machine import median


def cohort() -> list[str]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        generate_cohort(Path(out), cases=40, seed=0, spacing_mm=3.0)
        seconds = time.perf_counter() - started
    return [f"synthetic cohort, 40 cases at 3 mm (one process, one core): {seconds:.1f} s (target < 60 s)"]


def preprocessing() -> list[str]:
    ct = Volume(np.full((512, 512, 300), -1000, dtype=np.int16), np.diag([0.8, 0.8, 1.0, 1.0]))
    ct.array[100:400, 120:380, 20:280] = 40
    forward, inverse, peaks = [], [], []
    for _ in range(3):
        tracemalloc.start()
        started = time.perf_counter()
        pre = preprocess_image(ct)
        forward.append(time.perf_counter() - started)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        started = time.perf_counter()
        to_native((pre.image > 0.5).astype(np.uint8), pre.grid, order=0)
        inverse.append(time.perf_counter() - started)
    mib = 2**20
    return [
        f"preprocess 512x512x300 int16 CT ({ct.array.nbytes / mib:.0f} MiB) to 1.5 mm: {median(forward):.2f} s, "
        f"peak new allocation {median(peaks) / mib:.0f} MiB ({median(peaks) / ct.array.nbytes:.2f}x the input)",
        f"inverse to the native grid (labels, nearest): {median(inverse):.2f} s",
    ]


def surface_metrics() -> list[str]:
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    rng = np.random.default_rng(0)
    shape = (200, 200, 120)
    truth = ndimage.gaussian_filter(rng.standard_normal(shape), 6) > 0.05
    pred = ndimage.binary_dilation(truth, iterations=2) & (rng.random(shape) > 0.001)
    spacing = (0.8, 0.8, 2.0)
    onehot = [torch.from_numpy(np.stack([~m, m])[None].astype(np.float32)) for m in (pred, truth)]
    ours, theirs = [], []
    for _ in range(3):
        started = time.perf_counter()
        metrics.nsd(pred, truth, spacing, 2.0)
        metrics.hd95(pred, truth, spacing)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        compute_surface_dice(*onehot, class_thresholds=[2.0], include_background=False, spacing=spacing)
        compute_hausdorff_distance(*onehot, include_background=False, percentile=95, spacing=spacing)
        theirs.append(time.perf_counter() - started)
    return [
        f"NSD + HD95 on a {shape} pair: ours {median(ours):.2f} s, MONAI {median(theirs):.2f} s, "
        f"ratio ours/MONAI {median(ours) / median(theirs):.2f}",
    ]
