"""A second, geometric teacher: gradient-boosted trees from AFLW's 21 landmarks to (yaw, pitch, roll).

Fit on the labelled train faces' ``pt2d`` in about a minute, it is worse than the image models alone but its
errors are not theirs: blended into the image teacher's pseudo-labels of AFLW_extra (whose faces carry the same
21 hand-clicked points), it gives the students supervision the image teacher does not have. Training side only
(scikit-learn); nothing here is shipped or imported by inference.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import sha256_bytes, write_bytes, write_json
from qa_headpose.core.errors import DataError
from qa_headpose.datasets.aflw_extra import PSEUDO_COLUMNS
from qa_headpose.datasets.landmarks import aflw2000_points, aflw_extra_points, landmark_features


@dataclasses.dataclass(frozen=True)
class LandmarkTeacherConfig:
    """The trees of the landmark teacher (one regressor per angle) and its weight in the blended labels."""

    n_estimators: int = 400
    max_depth: int = 3
    learning_rate: float = 0.05
    subsample: float = 0.8
    seed: int = 0
    # (1 - weight) * image teacher + weight * landmark teacher; 0.3 of {0.1, 0.2, 0.3} on val (docs/generalization.md).
    weight: float = 0.3


class LandmarkTeacher:
    """(n, 21, 2) landmark pixels -> (n, 3) degrees; NaN rows for faces with fewer than two visible points."""

    def __init__(self, regressors: list, config: LandmarkTeacherConfig):
        self.regressors, self.config = regressors, config

    @classmethod
    def fit(cls, points: np.ndarray, poses: np.ndarray, config: LandmarkTeacherConfig = LandmarkTeacherConfig()):
        """Fits one regressor per angle on faces with their labels (faces without usable points are skipped)."""
        from sklearn.ensemble import GradientBoostingRegressor

        x = landmark_features(points)
        usable = np.isfinite(x).all(1)
        if usable.sum() < 10:
            raise DataError(f"The landmark teacher needs at least 10 faces with landmarks. Received: {usable.sum()}")
        regressors = [
            GradientBoostingRegressor(
                n_estimators=config.n_estimators,
                max_depth=config.max_depth,
                learning_rate=config.learning_rate,
                subsample=config.subsample,
                random_state=config.seed,
            ).fit(x[usable], np.asarray(poses, np.float64)[usable, i])
            for i in range(3)
        ]
        return cls(regressors, config)

    def predict(self, points: np.ndarray) -> np.ndarray:
        x = landmark_features(points)
        out = np.full((len(x), 3), np.nan, np.float32)
        usable = np.isfinite(x).all(1)
        if usable.any():
            out[usable] = np.stack([r.predict(x[usable]) for r in self.regressors], 1)
        return out


def fit_on_aflw2000(
    folder: str | os.PathLike,
    split: str | None = "aflw2000_val",
    config: LandmarkTeacherConfig = LandmarkTeacherConfig(),
) -> tuple[LandmarkTeacher, dict]:
    """The landmark teacher fit on the train faces of an AFLW2000 folder; and its val MAE (the protocol's faces)."""
    from qa_headpose.datasets.load import load_filtered
    from qa_headpose.datasets.splits import split_train_val

    faces, _ = load_filtered([folder])
    train, val = split_train_val(faces, split)
    teacher = LandmarkTeacher.fit(aflw2000_points(folder, train.names), train.poses, config)
    val_mae = angles.mean_absolute_errors(teacher.predict(aflw2000_points(folder, val.names)), val.poses)
    return teacher, {"train_faces": len(train), "val": val_mae}


def blend_pseudo_labels(
    image_labels: str | os.PathLike,
    extra_folder: str | os.PathLike,
    teacher: LandmarkTeacher,
    out: str | os.PathLike,
    record: dict | None = None,
) -> dict:
    """Writes a pseudo-label CSV: the image teacher's pose blended with the landmark teacher's.

    The confidence columns (mirror disagreement, spread, AFLW's ``gt_yaw``) are the image teacher's; a face the
    landmark teacher cannot read (fewer than two visible points) keeps the image teacher's pose. Beside the CSV,
    ``<out>.teacher.json`` names both teachers.

    Returns:
        Summary: faces, faces blended, the weight, mean |blended - image label| per angle.
    """
    from qa_headpose.datasets.pseudo_label import teacher_record

    image_labels, out = Path(image_labels), Path(out)
    with open(image_labels, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(PSEUDO_COLUMNS) - set(rows[0]):
        raise DataError(f"{image_labels} is not a pseudo-label CSV (columns {list(PSEUDO_COLUMNS)})")
    names, points = aflw_extra_points(extra_folder)
    by_name = dict(zip(names, teacher.predict(points)))
    w = teacher.config.weight
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, PSEUDO_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    shift, blended = [], 0
    for row in rows:
        image = np.array([float(row[k]) for k in angles.ANGLE_ORDER])
        geometric = by_name.get(row["name"], np.full(3, np.nan))
        pose = image if not np.isfinite(geometric).all() else (1 - w) * image + w * geometric
        blended += int(np.isfinite(geometric).all())
        shift.append(np.abs(pose - image))
        writer.writerow({**row, **{k: f"{v:.3f}" for k, v in zip(angles.ANGLE_ORDER, pose)}})
    write_bytes(out, buffer.getvalue().encode())
    shift = np.mean(shift, 0)
    summary = {
        "faces": len(rows),
        "blended": blended,
        "weight": w,
        "mean_shift_deg": dict(zip(angles.ANGLE_ORDER, shift.tolist())),
    }
    image_record = teacher_record(image_labels)
    write_json(
        teacher_record(out),
        {
            "image_teacher": {
                "labels": str(image_labels),
                "sha256": sha256_bytes(image_labels.read_bytes()),
                "record": str(image_record) if image_record.is_file() else None,
            },
            "landmark_teacher": {"config": dataclasses.asdict(teacher.config), **(record or {})},
            "source": str(extra_folder),
            **summary,
        },
    )
    return summary
