"""Errors by |yaw| band and the reach of a model's yaw: how it does across the whole yaw range. numpy only.

A mean error hides what users of profiles see: a model that reads every profile as +-57 degrees can still
score well on a set of mostly frontal faces. So errors are reported per band of the labelled |yaw|, with the
mean predicted |yaw| per band (calibration) and the reach: the mean predicted |yaw| of the faces labelled at
the set's largest |yaw|. Angles a dataset does not annotate (NaN, e.g. Pointing'04's roll) are not scored.
"""

from __future__ import annotations

import numpy as np

from qa_headpose.core.angles import ANGLE_ORDER

# Bands of the labelled |yaw|, degrees: [low, high) except the last, which is open above.
YAW_BANDS = ((0.0, 30.0), (30.0, 60.0), (60.0, 75.0), (75.0, 90.0), (90.0, np.inf))
# Pitch is scored separately on faces whose labelled |pitch| is within this (Pointing'04's +-60 and +-90
# tilts are the noisiest of its labels).
MODERATE_PITCH_DEG = 30.0


def _signed_by_label(pred_yaw: np.ndarray, true_yaw: np.ndarray) -> np.ndarray:
    """Predicted yaw with the label's sign: a profile read as the other side counts as negative; a face labelled 0
    counts as its predicted |yaw|."""
    return np.where(true_yaw == 0, np.abs(pred_yaw), pred_yaw * np.sign(true_yaw))


def band_name(low: float, high: float) -> str:
    """``"0-30"``, ..., ``">90"``."""
    return f">{low:g}" if np.isinf(high) else f"{low:g}-{high:g}"


def band_of(abs_yaw: np.ndarray) -> np.ndarray:
    """Index into `YAW_BANDS` of each |yaw| (90 itself falls in 75-90, as Pointing'04's pan 90 does); -1 for NaN."""
    abs_yaw = np.asarray(abs_yaw, np.float64)
    index = np.full(abs_yaw.shape, -1)
    for i, (low, high) in enumerate(YAW_BANDS):
        upper = abs_yaw <= high if high == 90.0 else abs_yaw < high
        lower = abs_yaw > low if low == 90.0 else abs_yaw >= low
        index[lower & upper] = i
    return index


def scored_mae(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Per-angle MAE over the faces that have that label, and their mean (NaN where an angle has none).

    ``mean`` is the mean over the three angles, so it is NaN when one angle is never annotated: a mean over
    fewer angles would not be comparable with other datasets' means.
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != 3:
        raise ValueError(f"Expected two (n, 3) arrays. Received: {pred.shape} and {true.shape}")
    err = np.abs(pred - true)
    result = {}
    for i, name in enumerate(ANGLE_ORDER):
        known = np.isfinite(true[:, i])
        result[name] = float(err[known, i].mean()) if known.any() else float("nan")
    result["mean"] = float(np.mean([result[name] for name in ANGLE_ORDER]))
    result["count"] = int(len(pred))
    return result


def yaw_bands(pred: np.ndarray, true: np.ndarray) -> list[dict[str, float]]:
    """Per band of the labelled |yaw|: faces, MAE per angle, mean labelled and mean predicted |yaw|.

    The sign-aware calibration is ``mean_pred_abs_yaw`` against ``mean_true_abs_yaw`` (a model that
    compresses large yaws has the first below the second); bands without faces are left out.
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    which = band_of(np.abs(true[:, 0]))
    rows = []
    for i, (low, high) in enumerate(YAW_BANDS):
        mask = which == i
        if not mask.any():
            continue
        row = {"band": band_name(low, high), "count": int(mask.sum())}
        row.update({k: v for k, v in scored_mae(pred[mask], true[mask]).items() if k in ANGLE_ORDER})
        row["mean_true_abs_yaw"] = float(np.abs(true[mask, 0]).mean())
        row["mean_pred_abs_yaw"] = float(_signed_by_label(pred[mask, 0], true[mask, 0]).mean())
        rows.append(row)
    return rows


def reach(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """The mean predicted |yaw| (signed by the label) of the faces at the largest labelled |yaw|, and that |yaw|."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    labelled = np.abs(true[:, 0])
    top = np.nanmax(labelled)
    mask = labelled >= top - 1e-6
    return {
        "labelled_abs_yaw": float(top),
        "mean_pred_abs_yaw": float(_signed_by_label(pred[mask, 0], true[mask, 0]).mean()),
    }


def moderate_pitch_mae(pred: np.ndarray, true: np.ndarray, limit_deg: float = MODERATE_PITCH_DEG) -> float:
    """Pitch MAE on the faces whose labelled |pitch| <= ``limit_deg`` (NaN without such faces)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    mask = np.abs(true[:, 1]) <= limit_deg
    return float(np.abs(pred[mask, 1] - true[mask, 1]).mean()) if mask.any() else float("nan")


def report(pred: np.ndarray, true: np.ndarray) -> dict:
    """Everything above in one dict: overall MAE, moderate pitch, bands, reach (what model cards store)."""
    return {
        **scored_mae(pred, true),
        "pitch_moderate": moderate_pitch_mae(pred, true),
        "bands": yaw_bands(pred, true),
        "reach": reach(pred, true),
    }


def format_bands(rows: list[dict[str, float]]) -> str:
    """A small text table of `yaw_bands`: band, faces, yaw/pitch/roll MAE, mean |yaw| labelled -> predicted."""
    lines = [f"{'|yaw| band':>10} {'faces':>5} {'yaw':>6} {'pitch':>6} {'roll':>6}  mean |yaw| labelled -> predicted"]
    for r in rows:
        yaw, pitch, roll = (f"{r[k]:6.2f}" if r[k] == r[k] else f"{'n/a':>6}" for k in ANGLE_ORDER)
        lines.append(
            f"{r['band']:>10} {r['count']:>5} {yaw} {pitch} {roll}  "
            f"{r['mean_true_abs_yaw']:6.1f} -> {r['mean_pred_abs_yaw']:6.1f}"
        )
    return "\n".join(lines)
