"""A teacher labels unlabelled faces: an ensemble of .tflite models, each on a crop and its mirror. No TF.

The models may differ in input size (a 128x128 and a 64x64 student, say): each sees the
face's crop at its own size.

The teacher's pose is the mean over its models and over (crop, mirror), the mirror's
output flipped back ((yaw, pitch, roll) -> (-yaw, pitch, -roll)). Its confidence is
written beside it: ``mirror_*`` = |crop - flipped mirror| per angle, ``spread`` = mean
absolute deviation of the models from their mean (0 for one model), and AFLW's
``gt_yaw`` for comparison. Labels are written to CSV atomically; work done so far is
kept in ``<out>.partial.npz`` (atomically, every chunk), so a killed run restarts
where it stopped.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from qa_headpose.core.angles import average_with_mirror, flip_pose
from qa_headpose.core.atomic import sha256_bytes, write_bytes, write_json
from qa_headpose.datasets.aflw_extra import PSEUDO_COLUMNS, load_aflw_extra
from qa_headpose.inference.preprocess import crop_face


def teacher_predict(
    runners: Sequence[Callable[[np.ndarray], np.ndarray]], x: np.ndarray | Mapping[int, np.ndarray]
) -> dict[str, np.ndarray]:
    """The ensemble's pose and confidence for a batch of model inputs.

    Args:
        runners: callables (n, S, S, 3) float32 pixels -> (n, 3) degrees (`TFLiteRunner`s).
        x: float32 (n, S, S, 3) BGR pixels, or such inputs by side S for models of several
            input sizes (then each runner needs an ``input_size``).

    Returns:
        dict with ``pose`` (n, 3), ``mirror`` (n, 3) and ``spread`` (n,), degrees.
    """
    by_size = x if isinstance(x, Mapping) else None
    per_model, mirror = [], []
    for run in runners:
        inputs = by_size[run.input_size] if by_size is not None else x
        direct, of_mirror = run(inputs), run(np.ascontiguousarray(inputs[:, :, ::-1]))
        per_model.append(average_with_mirror(direct, of_mirror))
        mirror.append(np.abs(direct - flip_pose(of_mirror)))
    stack = np.stack(per_model)
    pose = stack.mean(0)
    return {"pose": pose, "mirror": np.mean(mirror, 0), "spread": np.abs(stack - pose).mean((0, 2))}


def teacher_record(labels_csv: str | os.PathLike) -> Path:
    """Where `pseudo_label_folder` records which teacher made a label CSV: ``<csv>.teacher.json``."""
    path = Path(labels_csv)
    return path.with_name(path.name + ".teacher.json")


def pseudo_label_folder(
    folder: str | os.PathLike,
    teachers: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    num_threads: int = 2,
    chunk: int = 512,
    progress: Callable[[str, int, int], None] | None = None,
    limit: int | None = None,
) -> dict[str, float]:
    """Writes the teacher's labels for every face of an AFLW_extra folder to ``out`` (CSV).

    Args:
        teachers: .tflite models (e.g. a float32 and an int8 export, or several students).
        chunk: faces per saved step of ``<out>.partial.npz``.
        progress: called with ``(stage, faces done, faces)`` at the start and after each chunk.
        limit: label only the first ``limit`` faces.

    Also writes `teacher_record` (``<out>.teacher.json``): the teacher's files (path, sha256) and the summary.

    Returns:
        Summary: faces labelled, mean mirror disagreement, mean ensemble spread and the
        mean |teacher yaw - gt_yaw|, degrees.
    """
    from qa_headpose.inference.runtime import TFLiteRunner

    out = Path(out)
    runners = [TFLiteRunner(t, num_threads=num_threads) for t in teachers]
    sizes = sorted({r.input_size for r in runners})
    faces = load_aflw_extra(folder, labels="aflw_yaw", limit=limit)  # AFLW's yaw, to report the gap to it
    gt_yaw = faces.poses[:, 0]
    n = len(faces)
    partial = out.with_name(out.name + ".partial.npz")
    done, pose, mirror, spread = 0, np.zeros((n, 3), np.float32), np.zeros((n, 3), np.float32), np.zeros(n, np.float32)
    if partial.is_file():
        with np.load(partial) as saved:
            if list(saved["names"]) == faces.names:
                done = int(saved["done"])
                pose[:done], mirror[:done], spread[:done] = (
                    saved["pose"][:done],
                    saved["mirror"][:done],
                    saved["spread"][:done],
                )
    stage = f"pseudo-label {Path(folder).name}"
    progress = progress or (lambda stage, done, total: None)
    progress(stage, done, n)
    for start in range(done, n, chunk):
        stop = min(n, start + chunk)
        x = {
            size: np.stack([crop_face(faces.images[i], faces.boxes[i], size) for i in range(start, stop)]).astype(
                np.float32
            )
            for size in sizes
        }
        got = teacher_predict(runners, x)
        pose[start:stop], mirror[start:stop], spread[start:stop] = got["pose"], got["mirror"], got["spread"]
        buffer = io.BytesIO()
        np.savez(buffer, names=np.array(faces.names), done=stop, pose=pose, mirror=mirror, spread=spread)
        write_bytes(partial, buffer.getvalue())
        progress(stage, stop, n)
    gap = np.abs(pose[:, 0] - gt_yaw)
    summary = {
        "faces": n,
        "mirror_mean_deg": float(mirror.mean()),
        "spread_mean_deg": float(spread.mean()),
        "gt_yaw_gap_deg": float(np.nanmean(gap)),
        "gt_yaw_r": float(np.corrcoef(pose[:, 0], gt_yaw)[0, 1]),
    }
    # Which teacher made the labels, beside them (the CSV first: a JSON never describes a missing CSV).
    teacher = [{"path": str(t), "sha256": sha256_bytes(Path(t).read_bytes())} for t in teachers]
    write_bytes(out, _to_csv(faces.names, pose, mirror, spread, gt_yaw).encode())
    write_json(teacher_record(out), {"teacher": teacher, "source": str(folder), **summary})
    partial.unlink(missing_ok=True)
    return summary


def _to_csv(names, pose, mirror, spread, gt_yaw) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PSEUDO_COLUMNS)
    for name, p, m, s, g in zip(names, pose, mirror, spread, gt_yaw):
        writer.writerow([name, *(f"{v:.3f}" for v in (*p, *m, s, g))])
    return buffer.getvalue()
