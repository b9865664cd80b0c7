"""Temperature scaling per organ (Guo et al., 2017), for the members' sigmoid outputs.

A member's probability for an organ becomes ``sigmoid(logit / T)``: one number per organ, fitted
by minimising the negative log-likelihood of the human labels, so the ranking of voxels (and every
threshold at 0.5) is unchanged while over- or under-confidence is corrected. The scoring service
reads the calibrated probabilities the inference service stores; the published method's formulas
stay as they are.

Which voxels count: around the organ, where the question is open, not the whole scan (which is
nearly all confident background and would make any model look calibrated): the box of the voxels
where the label or the member says the organ might be (p > ``NEAR``), grown by ``MARGIN`` voxels.
At most ``MAX_VOXELS`` of them per organ and case, taken at a fixed stride, keep the fit cheap.

The expected calibration error (ECE) is the standard one: 15 equal-width bins of the probability,
the mean of |accuracy - confidence| weighted by each bin's share of the voxels.

When a temperature is applied (``applied``): only when its benefit was measured out of sample (two
cases or more, two folds by case) and the error fell. A fit on one case always lowers the error on
that case, which proves nothing; the demo's round-2 run showed it (one case, ECE 0.045 -> 0.053 on
the next). An organ whose fit is not applied keeps T = 1: its probabilities as the member gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR = 0.01
MARGIN = 4
MAX_VOXELS = 200_000
BINS = 15
T_RANGE = (0.05, 20.0)
EPS = 1e-6


def logits_of(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def near_voxels(p: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Indices (flat) of the voxels around the organ that calibration looks at."""
    candidates = (p > NEAR) | truth
    if where is not None:
        candidates &= where
    if not candidates.any():
        return np.zeros(0, np.int64)
    nz = np.nonzero(candidates)
    lo = [max(int(a.min()) - MARGIN, 0) for a in nz]
    hi = [min(int(a.max()) + MARGIN + 1, n) for a, n in zip(nz, p.shape, strict=True)]
    box = np.zeros(p.shape, bool)
    box[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    if where is not None:
        box &= where
    index = np.flatnonzero(box)
    stride = max(1, index.size // MAX_VOXELS)
    return index[::stride]


def nll(logits: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # -[y log s(z) + (1-y) log(1-s(z))] = softplus(z) - y z
    return float(np.mean(np.logaddexp(0.0, z) - truth * z))


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The T minimising the NLL (golden-section search on log T; NLL is unimodal in it)."""
    if logits.size == 0:
        return 1.0
    a, b = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, truth, float(np.exp(c))), nll(logits, truth, float(np.exp(d)))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, truth, float(np.exp(c)))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, truth, float(np.exp(d)))
    return float(np.exp((a + b) / 2))


def ece(p: np.ndarray, truth: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of probabilities ``p`` for the binary ``truth``."""
    if p.size == 0:
        return 0.0
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        n = int(in_bin.sum())
        if n:
            total += n * abs(float(truth[in_bin].mean()) - float(p[in_bin].mean()))
    return total / p.size


@dataclass(frozen=True)
class OrganCalibration:
    temperature: float
    ece_before: float
    ece_after: float
    voxels: int
    held_out: bool  # ECE measured on cases the temperature was not fitted on
    applied: bool = False  # held out and lower after: the temperature is published (else T = 1)


def calibrate(logits: list[np.ndarray], truths: list[np.ndarray]) -> OrganCalibration:
    """One organ: sampled logits and labels per case. With two cases or more the ECE is measured
    out of sample (two folds by case, each fitted on the other); the temperature kept is fitted on
    every case."""
    everything_logits, everything_truth = np.concatenate(logits), np.concatenate(truths).astype(np.float64)
    temperature = fit_temperature(everything_logits, everything_truth)
    if len(logits) >= 2:
        folds = [list(range(0, len(logits), 2)), list(range(1, len(logits), 2))]
        before, after = [], []
        for fit_on, test_on in (folds, folds[::-1]):
            t = fit_temperature(
                np.concatenate([logits[i] for i in fit_on]), np.concatenate([truths[i] for i in fit_on]).astype(float)
            )
            z, y = np.concatenate([logits[i] for i in test_on]), np.concatenate([truths[i] for i in test_on])
            before.append((ece(sigmoid(z), y), z.size))
            after.append((ece(sigmoid(z / t), y), z.size))
        weight = sum(n for _, n in before)
        ece_before, ece_after = sum(e * n for e, n in before) / weight, sum(e * n for e, n in after) / weight
        return OrganCalibration(
            temperature,
            ece_before,
            ece_after,
            int(everything_logits.size),
            held_out=True,
            applied=ece_after < ece_before,
        )
    return OrganCalibration(
        temperature,
        ece(sigmoid(everything_logits), everything_truth),
        ece(sigmoid(everything_logits / temperature), everything_truth),
        int(everything_logits.size),
        held_out=False,
    )
