"""Is one model better than another on the same faces, beyond the noise of which faces were drawn? numpy only.

A gain of 0.05 degrees on 226 faces is inside the noise. The paired bootstrap resamples faces (the same draw for
both models) and gives the interval of the difference in mean error; a gain whose interval holds 0 is noise.
"""

from __future__ import annotations

import numpy as np


def face_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per face, the mean absolute error over the angles it has labels for (n,)."""
    err = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))
    return np.nanmean(err, axis=1)


def paired_bootstrap(
    errors_a: np.ndarray, errors_b: np.ndarray, draws: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of (b - a) over faces and its bootstrap interval: below 0 means b has the smaller error.

    Args:
        errors_a, errors_b: per-face errors of two models on the same faces, same order.
    """
    a, b = np.asarray(errors_a, np.float64), np.asarray(errors_b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"Expected two (n,) arrays of one length n > 0. Received: {a.shape} and {b.shape}")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (draws, len(diff)))].mean(1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"difference": float(diff.mean()), "low": float(low), "high": float(high)}
