"""AFLW's 21 hand-clicked landmarks as pose features: AFLW2000's ``pt2d`` and AFLW_extra's ``lm*`` columns. No TF.

Both sets carry the same 21-point AFLW scheme, invisible points marked by negative coordinates. The points
hold pose evidence the image model misses (which points a turned head hides, where the visible ones lie), so
a regressor from them is a second, geometric teacher (`qa_headpose.training.landmark_teacher`).
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from qa_headpose.core.errors import DataError

POINTS = 21
# Per face: 21 (x, y) about the visible points' box centre in box units (0 where invisible), 21 visibility
# flags, and the visible box's aspect ratio.
FEATURES = 2 * POINTS + POINTS + 1


def landmark_features(points: np.ndarray) -> np.ndarray:
    """Features (n, `FEATURES`) from (n, 21, 2) landmark pixels, invisible points negative.

    Invariant to where the face is and how large: positions are taken about the visible points' box
    centre and divided by its width and height. A face with fewer than two visible points gets NaN.
    """
    pts = np.asarray(points, np.float64).reshape(-1, POINTS, 2)
    visible = np.all(pts >= 0, axis=2) & np.all(np.isfinite(pts), axis=2)
    big = np.where(visible[..., None], pts, np.nan)
    with warnings.catch_warnings():  # all-NaN rows (no visible point) are marked NaN below
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(big, axis=1), np.nanmax(big, axis=1)
    size = np.maximum(high - low, 1.0)
    centre = (low + high) / 2
    normalized = np.where(visible[..., None], (pts - centre[:, None]) / size[:, None], 0.0)
    aspect = size[:, 0] / size[:, 1]
    out = np.concatenate([normalized.reshape(len(pts), -1), visible.astype(np.float64), aspect[:, None]], axis=1)
    out[visible.sum(1) < 2] = np.nan
    return out.astype(np.float32)


def read_pt2d(mat_path: str | os.PathLike) -> np.ndarray:
    """The first 21 points (21, 2) of an AFLW2000 ``.mat``'s ``pt2d`` (three files carry 23).

    Raises:
        DataError: for an unreadable file or one without 21 points.
    """
    import scipy.io

    try:
        pt2d = np.asarray(scipy.io.loadmat(str(mat_path))["pt2d"], np.float64)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"Cannot read pt2d from {mat_path}: {exc}") from None
    if pt2d.ndim != 2 or pt2d.shape[0] != 2 or pt2d.shape[1] < POINTS:
        raise DataError(f"{mat_path}: pt2d must be (2, >= {POINTS}). Received: {pt2d.shape}")
    return pt2d[:, :POINTS].T


def aflw2000_points(folder: str | os.PathLike, names: list[str]) -> np.ndarray:
    """(n, 21, 2) landmarks of the named faces of an AFLW2000 folder (names as `load_faces` gives them)."""
    return np.stack([read_pt2d(Path(folder) / f"{name}.mat") for name in names])


def aflw_extra_points(folder: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(names, (n, 21, 2) landmarks in crop pixels) of every face of an AFLW_extra ``labels.csv``.

    Raises:
        DataError: for a missing file or one without the ``lm{k}_x``/``lm{k}_y`` columns.
    """
    path = Path(folder) / "labels.csv"
    columns = [f"lm{k}_{axis}" for k in range(POINTS) for axis in ("x", "y")]
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(columns) - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path} lacks the landmark column(s) {sorted(missing)[:3]}...")
            rows = [(Path(row["name"]).stem, [float(row[c]) for c in columns]) for row in reader]
    except (OSError, ValueError, csv.Error) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"Cannot read landmarks from {path}: {exc}") from None
    return [name for name, _ in rows], np.asarray([p for _, p in rows], np.float64).reshape(-1, POINTS, 2)
