"""Scoring benchmark.

Speed: a 250x250x300 grid, 3 members, 9 organs, uint8 inputs already in memory. Side by side: the
straightforward whole-volume implementation (``reference_dense``, the published script's way) and
ours (``reference``), same inputs, same outputs (checked). The memory-bandwidth floor is the bytes
the inputs occupy divided by this machine's measured read bandwidth.

Quality: on simulated members with known errors, error detection of both modes, and how much of
the dataset's error a 25% budget reaches when cases are ranked by each mode, against random.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from scipy import ndimage

from atlasloop.imaging.compact import Cropped, slices
from atlasloop.imaging.labels import ORGAN_IDS
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.method import reference
from atlasloop.method.case_scoring import score_case
from atlasloop.method.detection import NOTHING, detect
from atlasloop.method.reference_dense import organ_attention_dense
from atlasloop.method.simulate import simulate
from atlasloop.method.structures import TARGETS
from benchmarks.machine import median

SHAPE = (250, 250, 300)


def _read_bandwidth_gbs() -> float:
    data = np.ones(512 * 2**20, np.uint8)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        data.max()
        times.append(time.perf_counter() - started)
    return data.nbytes / median(times) / 1e9


def _inputs():
    _, labels = render(np.random.default_rng([1, 0]), SITES["A"], 3.0)
    zoom = [t / s for t, s in zip(SHAPE, labels.shape, strict=True)]
    truth = ndimage.zoom(labels.array, zoom, order=0)[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    affine = labels.affine @ np.diag([1 / z for z in zoom] + [1.0])
    output = simulate(truth, affine, np.random.default_rng(0))
    soft = {o: [output.soft[m][o].full(SHAPE) for m in output.members] for o in TARGETS}
    entropy = {o: [output.entropy[m][o].full(SHAPE) for m in output.members] for o in TARGETS}
    segs = {o: output.pseudo[o].full(SHAPE).astype(np.uint8) for o in TARGETS}
    return soft, entropy, segs


def _ours(soft, entropy, segs):
    pseudo = {o: Cropped.of(s) for o, s in segs.items()}
    results = []
    for organ in TARGETS:
        results.append(
            reference.organ_attention(
                organ, [Cropped.of(a) for a in soft[organ]], [Cropped.of(a) for a in entropy[organ]], pseudo, SHAPE
            )
        )
    return results


def speed() -> list[str]:
    soft, entropy, segs = _inputs()
    input_bytes = sum(a.nbytes for arrays in (*soft.values(), *entropy.values()) for a in arrays)
    input_bytes += sum(a.nbytes for a in segs.values())
    ours_times, ours_peak = [], 0
    for _ in range(3):
        tracemalloc.start()
        started = time.perf_counter()
        results = _ours(soft, entropy, segs)
        ours_times.append(time.perf_counter() - started)
        ours_peak = max(ours_peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    tracemalloc.start()
    started = time.perf_counter()
    dense = {o: organ_attention_dense(o, soft[o], entropy[o], segs) for o in TARGETS}
    dense_time = time.perf_counter() - started
    dense_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    same = all(np.array_equal(r.full(SHAPE), dense[r.organ][0]) for r in results)
    bandwidth = _read_bandwidth_gbs()
    floor = input_bytes / (bandwidth * 1e9)
    ours = median(ours_times)
    mib = 2**20
    return [
        f"inputs: {SHAPE} grid, 3 members x 9 organs x (soft + entropy) uint8 + 9 pseudo-labels "
        f"= {input_bytes / mib:.0f} MiB; outputs identical: {same}",
        f"straightforward (whole volume, float64): {dense_time:6.2f} s per case, peak {dense_peak / mib:6.0f} MiB",
        f"AtlasLoop reference mode:                {ours:6.2f} s per case, peak {ours_peak / mib:6.0f} MiB "
        f"(median of 3)",
        f"  speed-up {dense_time / ours:.1f}x; target >= 10x and < 2 s on one core",
        f"  memory-bandwidth floor: {input_bytes / mib:.0f} MiB at {bandwidth:.1f} GB/s = {floor:.3f} s; "
        f"ours is {ours / floor:.1f}x the floor",
    ]


def quality(cases: int = 16) -> list[str]:
    totals = {"reference": NOTHING, "improved": NOTHING}
    priorities: dict[str, list[float]] = {"reference": [], "improved": []}
    errors: list[int] = []
    for i in range(cases):
        site = SITES["ABCD"[i % 4]]
        _, labels = render(np.random.default_rng([21, i]), site, 3.0)
        output = simulate(labels.array, labels.affine, np.random.default_rng(100 + i))
        case_errors = 0
        for mode in totals:
            result = score_case(f"c{i}", output, mode)
            priorities[mode].append(result.priority)
            for organ in result.organs:
                region = np.zeros(output.shape, bool)
                if organ.attention.box:
                    region[slices(organ.attention.box)] = organ.attention.region
                d = detect(
                    region,
                    output.pseudo[organ.organ].full(output.shape).astype(bool),
                    labels.array == ORGAN_IDS[organ.organ],
                    min_error_voxels=10,
                )
                totals[mode] += d
                if mode == "reference":
                    case_errors += d.error_voxels
        errors.append(case_errors)
    budget = max(1, cases // 4)
    lines = [f"{cases} simulated cases (sites A-D, 3 mm), errors of >= 10 voxels; published: 0.78 sens, 0.83 prec"]
    for mode, d in totals.items():
        order = np.argsort(-np.asarray(priorities[mode]), kind="stable")[:budget]
        reached = sum(errors[i] for i in order) / max(1, sum(errors))
        lines.append(
            f"  {mode:<9} region sens {d.region_sensitivity:.2f} prec {d.region_precision:.2f} | "
            f"voxel sens {d.voxel_sensitivity:.2f} prec {d.voxel_precision:.2f} | "
            f"top {budget} cases hold {reached:.0%} of error voxels"
        )
    lines.append(f"  random    top {budget} cases hold {budget / cases:.0%} of error voxels (expected)")
    return lines
