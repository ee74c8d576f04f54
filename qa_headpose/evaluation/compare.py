"""Is one model better than another on the same faces, beyond the noise of which faces were drawn? numpy only.

A gain of 0.05 degrees on 226 faces is inside the noise. The paired bootstrap resamples faces (the same draw for
both models) and gives the interval of the difference in mean error; a gain whose interval holds 0 is noise.
It does not see the other noise: two trainings of one recipe that differ only in their seed (one QAT epoch of
`accurate`: val 3.64-3.76, Pointing04_dev yaw 14.3-15.3) differ beyond each other's interval. `recipe_difference`
compares recipes over several seeds each and reports that spread beside the interval.
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


def seed_groups(items: list, seeds: int) -> list[list]:
    """``items`` cut into consecutive groups of ``seeds`` (the runs of one recipe, one per seed)."""
    if seeds < 1 or not items or len(items) % seeds:
        raise ValueError(f"Expected a positive multiple of {seeds} runs (groups of {seeds}). Received: {len(items)}")
    return [items[start : start + seeds] for start in range(0, len(items), seeds)]


def recipe_difference(runs_a: list[np.ndarray], runs_b: list[np.ndarray], **bootstrap) -> dict:
    """Recipe b against recipe a, each trained with several seeds (per-face errors of each run, same faces).

    Returns:
        `paired_bootstrap` of the per-face errors averaged over each recipe's runs, plus each run's mean error
        (``runs_a``, ``runs_b``) and ``seed_spread``: the larger of the two recipes' max - min over its runs.
        A difference smaller than the spread can come from the seeds alone, whatever its interval.
    """
    a, b = np.asarray(runs_a, np.float64), np.asarray(runs_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Expected (runs, faces) errors on the same faces. Received: {a.shape} and {b.shape}")
    result = paired_bootstrap(a.mean(0), b.mean(0), **bootstrap)
    means_a, means_b = a.mean(1), b.mean(1)
    spread = max(np.ptp(means_a), np.ptp(means_b))
    return {**result, "runs_a": means_a.tolist(), "runs_b": means_b.tolist(), "seed_spread": float(spread)}
