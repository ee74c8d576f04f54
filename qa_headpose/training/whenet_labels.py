"""Pseudo-labels with WHENet's yaw where it reads the face as turned far (`whenet_teacher.WHENet`).

The base labels (the image teacher's, `qa-headpose data pseudo-label`) keep their pitch and roll; their yaw
becomes the mean of both where |WHENet yaw| > the threshold, unless the two differ by more than the guard.
Teacher side only.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from qa_headpose.core.atomic import sha256_bytes, write_bytes, write_json
from qa_headpose.core.errors import DataError
from qa_headpose.training.pinned_wheel import find_pinned_file, sha256_of
from qa_headpose.training.whenet_teacher import WHENET_WEIGHTS, WHENet

logger = logging.getLogger(__name__)

# The blend: where |WHENet yaw| exceeds this, the label's yaw becomes the mean of both (issue 27: AFLW2000
# yaw at |yaw| 60-99 6.70 -> 5.07, AFLW_extra at |gt_yaw| > 60 14.2 -> 12.3, neutral overall).
DEFAULT_THRESHOLD_DEG = 60.0


def blend_yaw(
    base_yaw: np.ndarray,
    whenet_yaw: np.ndarray,
    threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    max_gap_deg: float | None = None,
):
    """The blended yaw: the mean of both where |WHENet yaw| > ``threshold_deg`` (and WHENet's is known).

    ``max_gap_deg`` guards against WHENet's gross errors (a frontal face read as turned far): where the two
    yaws differ by more than it, the base's is kept.

    Returns:
        (float32 yaw (n,), bool (n,) where it changed).
    """
    base, other = np.asarray(base_yaw, np.float32), np.asarray(whenet_yaw, np.float32)
    if base.shape != other.shape:
        raise ValueError(f"Expected two yaw arrays of one shape. Received: {base.shape} and {other.shape}")
    known = np.nan_to_num(other)
    changed = np.isfinite(other) & (np.abs(known) > threshold_deg)
    if max_gap_deg is not None:
        changed &= np.abs(known - base) <= max_gap_deg
    return np.where(changed, (base + other) / 2, base).astype(np.float32), changed


def whenet_pseudo_labels(
    folder: str | os.PathLike,
    base_labels: str | os.PathLike,
    out: str | os.PathLike,
    threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    weights: str | os.PathLike | None = None,
    chunk: int = 512,
    progress: Callable[[str, int, int], None] | None = None,
    limit: int | None = None,
    max_gap_deg: float | None = None,
) -> dict:
    """Writes a pseudo-label CSV: the base labels with their yaw blended with WHENet's (`blend_yaw`).

    Pitch, roll and the confidence columns stay the base's; a face WHENet does not see (left out of the
    folder's faces, or beyond ``limit``) keeps the base's yaw. WHENet reads each face of the AFLW_extra
    folder through the box the package's crop is built from (the landmark box in the black-padded crop,
    `aflw_extra.load_aflw_extra`). Work done so far is kept in ``<out>.partial.npz`` every ``chunk`` faces,
    so a killed run restarts where it stopped; ``<out>.teacher.json`` records both teachers and the summary.

    Args:
        progress: called with ``(stage, faces done, faces)`` at the start and after each batch.
        max_gap_deg: keep the base's yaw where WHENet's differs from it by more (`blend_yaw`); None: no guard.

    Returns:
        Summary: faces, faces changed, threshold, guard, mean |change| of the changed faces, and per band of AFLW's
        |gt_yaw| (`evaluation.bands.YAW_BANDS`) the faces, changed faces and their mean |change|.

    Raises:
        DataError: for a base file that is not a pseudo-label CSV or an unreadable folder.
    """
    from qa_headpose.datasets.aflw_extra import PSEUDO_COLUMNS, is_aflw_extra_folder, load_aflw_extra
    from qa_headpose.datasets.pseudo_label import teacher_record

    base_labels, out = Path(base_labels), Path(out)
    if not is_aflw_extra_folder(folder):
        raise DataError(f"Not an AFLW_extra folder (needs labels.csv and crops/): {folder}")
    try:
        with open(base_labels, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"Cannot read pseudo-labels {base_labels}: {exc}") from None
    if not rows or set(PSEUDO_COLUMNS) - set(rows[0]):
        raise DataError(f"{base_labels} is not a pseudo-label CSV (columns {list(PSEUDO_COLUMNS)})")
    weights_path = Path(weights) if weights is not None else find_pinned_file(WHENET_WEIGHTS)
    logger.info("Reading the faces of %s", folder)
    faces = load_aflw_extra(folder, labels="none", limit=limit)
    pred = _predict_resumable(faces, weights_path, out.with_name(out.name + ".partial.npz"), chunk, progress)
    by_name = dict(zip(faces.names, pred[:, 0]))
    try:
        base = np.array([float(row["yaw"]) for row in rows], np.float32)
        gt_yaw = np.array([float(row["gt_yaw"] or "nan") for row in rows], np.float32)
    except ValueError as exc:
        raise DataError(f"{base_labels}: {exc}") from None
    other = np.array([by_name.get(row["name"], np.nan) for row in rows], np.float32)
    yaw, changed = blend_yaw(base, other, threshold_deg, max_gap_deg)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, PSEUDO_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row, value, moved in zip(rows, yaw, changed):
        writer.writerow({**row, "yaw": f"{value:.3f}"} if moved else row)
    summary = _summary(base, yaw, changed, gt_yaw, threshold_deg, int(np.isfinite(other).sum()), max_gap_deg)
    # Which teachers made the labels, beside them (the CSV first: a JSON never describes a missing CSV).
    base_record = teacher_record(base_labels)
    base_teacher = _read_json(base_record).get("teacher", []) if base_record.is_file() else []
    whenet = {
        "path": f"{weights_path} ({WHENET_WEIGHTS.requirement}; its yaw where |yaw| > {threshold_deg:g}"
        + ("" if max_gap_deg is None else f" and within {max_gap_deg:g} of the base's")
        + ")",
        "sha256": sha256_of(weights_path),
    }
    write_bytes(out, buffer.getvalue().encode())
    write_json(
        teacher_record(out),
        {
            "teacher": [*base_teacher, whenet],
            "base_labels": {
                "labels": str(base_labels),
                "sha256": sha256_bytes(base_labels.read_bytes()),
                "record": str(base_record) if base_record.is_file() else None,
            },
            "whenet": {
                "weights": str(weights_path),
                "sha256": whenet["sha256"],
                "threshold_deg": threshold_deg,
                "max_gap_deg": max_gap_deg,
            },
            "source": str(folder),
            **summary,
        },
    )
    out.with_name(out.name + ".partial.npz").unlink(missing_ok=True)
    return summary


def _predict_resumable(faces, weights: Path, partial: Path, chunk: int, progress) -> np.ndarray:
    """WHENet's poses of a `FaceSet`, saved to ``partial`` every ``chunk`` faces and resumed from it."""
    n, done = len(faces), 0
    pred = np.full((n, 3), np.nan, np.float32)
    if partial.is_file():
        with np.load(partial) as saved:
            if list(saved["names"]) == faces.names:
                done = int(saved["done"])
                pred[:done] = saved["pred"][:done]
    stage = "whenet"
    progress = progress or (lambda stage, done, total: None)
    progress(stage, done, n)
    if done < n:
        model = WHENet(weights)
        for start in range(done, n, chunk):
            stop = min(n, start + chunk)
            pred[start:stop] = model(
                faces.images[start:stop], faces.boxes[start:stop], lambda k, _: progress(stage, start + k, n)
            )
            buffer = io.BytesIO()
            np.savez(buffer, names=np.array(faces.names), done=stop, pred=pred)
            write_bytes(partial, buffer.getvalue())
    return pred


def _summary(base, yaw, changed, gt_yaw, threshold_deg, seen, max_gap_deg=None) -> dict:
    from qa_headpose.evaluation.bands import YAW_BANDS, band_name, band_of

    shift = np.abs(yaw - base)
    which = band_of(np.abs(gt_yaw))
    bands = []
    for i, (low, high) in enumerate(YAW_BANDS):
        mask = which == i
        moved = mask & changed
        bands.append(
            {
                "band": band_name(low, high),
                "faces": int(mask.sum()),
                "changed": int(moved.sum()),
                "mean_change_deg": float(shift[moved].mean()) if moved.any() else 0.0,
                "mean_signed_change_deg": float(((yaw - base) * np.sign(gt_yaw))[moved].mean()) if moved.any() else 0.0,
                "gt_yaw_gap_deg": {
                    "base": float(np.abs(base - gt_yaw)[mask].mean()) if mask.any() else None,
                    "blended": float(np.abs(yaw - gt_yaw)[mask].mean()) if mask.any() else None,
                },
            }
        )
    return {
        "faces": int(len(base)),
        "whenet_faces": seen,
        "changed": int(changed.sum()),
        "threshold_deg": float(threshold_deg),
        "max_gap_deg": None if max_gap_deg is None else float(max_gap_deg),
        "mean_change_deg": float(shift[changed].mean()) if changed.any() else 0.0,
        "gt_yaw_gap_deg": {
            "base": float(np.nanmean(np.abs(base - gt_yaw))),
            "blended": float(np.nanmean(np.abs(yaw - gt_yaw))),
        },
        "bands_by_gt_yaw": bands,
    }


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
