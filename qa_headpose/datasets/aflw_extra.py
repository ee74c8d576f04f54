"""The AFLW_extra folder: 18,606 more AFLW faces as 3DDFA's 120x120 crops. numpy + OpenCV, no TF.

Layout (see its README): ``crops/imageNNNNN.jpg`` and ``labels.csv`` with, per crop,
AFLW's own yaw (``gt_yaw``, every face), AFLW's full (yaw, pitch, roll) where the
Hopenet export has the same face (``same_face == 1``), and the landmark box ``lbox_*``
in crop pixels. The FSA-Net crop (landmark box + 0.6 per side) reaches past the jpg,
so each face is padded with black around it (black measured best in that README).

Label availability is explicit: a pose that AFLW does not give is NaN, never 0
(`label_mask`); `angles.within_limit` is False for NaN, so the protocol filter drops
such faces and counts them.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from qa_headpose.inference.preprocess import CROP_MARGIN, enlarge_box

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
CROPS_DIR = "crops"
# The padded face covers the FSA-Net box grown by this factor about its centre, so
# the augmentation's scale and shift jitter still see black, not a clipped box.
PAD_ROOM = 1.3
# Landmark boxes outside [MIN_BOX, MAX_BOX] pixels in the 120-px crop are landmark errors.
MIN_BOX, MAX_BOX = 12.0, 160.0
# The label sources of `load_aflw_extra`.
LABEL_SOURCES = ("aflw", "aflw_yaw", "none")


@dataclasses.dataclass(frozen=True)
class ExtraLabels:
    """What ``labels.csv`` says per face (arrays in file order).

    Attributes:
        names: file stems (``imageNNNNN``).
        gt_yaw: float32 (n,) AFLW's yaw in degrees, every face.
        aflw_pose: float32 (n, 3) AFLW's (yaw, pitch, roll) where ``same_face == 1``, NaN elsewhere.
        boxes: float32 (n, 4) landmark boxes in crop pixels.
    """

    names: list[str]
    gt_yaw: np.ndarray
    aflw_pose: np.ndarray
    boxes: np.ndarray


def is_aflw_extra_folder(path: str | os.PathLike) -> bool:
    """True for a folder laid out as AFLW_extra (``labels.csv`` + ``crops/``)."""
    path = Path(path)
    return (path / LABELS_FILE).is_file() and (path / CROPS_DIR).is_dir()


def _float(text: str) -> float:
    return float(text) if text.strip() else float("nan")


def read_labels(folder: str | os.PathLike) -> ExtraLabels:
    """Parses ``labels.csv`` of an AFLW_extra folder.

    Raises:
        DataError: if the file lacks a needed column or holds an unreadable number.
    """
    from qa_headpose.core.errors import DataError

    path = Path(folder) / LABELS_FILE
    needed = ("name", "gt_yaw", "same_face", "yaw", "pitch", "roll", "lbox_x0", "lbox_y0", "lbox_x1", "lbox_y1")
    names, gt_yaw, poses, boxes = [], [], [], []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(needed) - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path} lacks the column(s) {sorted(missing)}")
            for row in reader:
                names.append(Path(row["name"]).stem)
                gt_yaw.append(_float(row["gt_yaw"]))
                same = row["same_face"].strip() == "1"
                poses.append([_float(row[k]) if same else float("nan") for k in ("yaw", "pitch", "roll")])
                boxes.append([_float(row[f"lbox_{k}"]) for k in ("x0", "y0", "x1", "y1")])
    except (OSError, ValueError, csv.Error) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"Cannot read {path}: {exc}") from None
    return ExtraLabels(
        names,
        np.asarray(gt_yaw, np.float32),
        np.asarray(poses, np.float32).reshape(-1, 3),
        np.asarray(boxes, np.float32),
    )


def usable_boxes(boxes: np.ndarray) -> np.ndarray:
    """Bool (n,): landmark boxes of a plausible size (the rest are landmark errors)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    return np.isfinite(boxes).all(1) & (w > 0) & (h > 0) & (side >= MIN_BOX) & (side <= MAX_BOX)


def pad_face(image: np.ndarray, box: np.ndarray, room: float = PAD_ROOM) -> tuple[np.ndarray, np.ndarray]:
    """Pads a crop with black so the FSA-Net box (grown by ``room``) lies inside it.

    Returns:
        (uint8 padded image, the landmark box in its pixels).
    """
    x0, y0, x1, y1 = enlarge_box(box, CROP_MARGIN)
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, room * (x1 - x0) / 2, room * (y1 - y0) / 2
    h, w = image.shape[:2]
    left, top = max(0, int(np.ceil(half_w - cx))), max(0, int(np.ceil(half_h - cy)))
    right, bottom = max(0, int(np.ceil(cx + half_w - w))), max(0, int(np.ceil(cy + half_h - h)))
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return padded, np.asarray(box, np.float32) + np.array([left, top, left, top], np.float32)


def _read_padded(args: tuple[Path, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from qa_headpose.inference.images import read_image

    path, box = args
    return pad_face(read_image(path), box)


def load_aflw_extra(
    folder: str | os.PathLike,
    labels: str | os.PathLike = "aflw",
    workers: int = 4,
    limit: int | None = None,
    max_mirror_deg: float | None = None,
    max_gt_yaw_gap_deg: float | None = None,
):
    """Loads AFLW_extra faces as a `FaceSet` (padded crops, landmark boxes, poses).

    Args:
        folder: the AFLW_extra folder.
        labels: "aflw" (AFLW's full angles; NaN where the export lacks the face),
            "aflw_yaw" (``gt_yaw`` with NaN pitch and roll), "none" (all NaN: faces only),
            or the path of a pseudo-label CSV (`read_pseudo_labels`; faces it lacks get NaN).
        workers: decoding threads.
        limit: load only the first ``limit`` faces (tests, quick looks).
        max_mirror_deg, max_gt_yaw_gap_deg: with pseudo-labels, the confidence filters
            of `read_pseudo_labels` (a face they leave out gets NaN, so the protocol filter drops it).

    Returns:
        `data.FaceSet`, names = file stems; faces with implausible landmark boxes are left out (logged).

    Raises:
        DataError: for an unreadable folder, label file or image.
    """
    from qa_headpose.core.errors import DataError
    from qa_headpose.datasets.faceset import FaceSet

    folder = Path(folder)
    if not is_aflw_extra_folder(folder):
        raise DataError(f"Not an AFLW_extra folder (needs {LABELS_FILE} and {CROPS_DIR}/): {folder}")
    table = read_labels(folder)
    keep = usable_boxes(table.boxes)
    if (~keep).any():
        logger.info("AFLW_extra: left out %d faces with implausible landmark boxes", int((~keep).sum()))
    index = np.flatnonzero(keep)[:limit]
    if labels == "aflw":
        poses = table.aflw_pose[index]
    elif labels == "aflw_yaw":
        poses = np.full((len(index), 3), np.nan, np.float32)
        poses[:, 0] = table.gt_yaw[index]
    elif labels == "none":
        poses = np.full((len(index), 3), np.nan, np.float32)
    else:
        pseudo = read_pseudo_labels(labels, max_mirror_deg, max_gt_yaw_gap_deg)
        poses = np.array([pseudo.get(table.names[i], (np.nan,) * 3) for i in index], np.float32).reshape(-1, 3)
    paths = [folder / CROPS_DIR / f"{table.names[i]}.jpg" for i in index]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        items = list(pool.map(_read_padded, zip(paths, table.boxes[index])))
    return FaceSet([im for im, _ in items], [b for _, b in items], poses, [table.names[i] for i in index])


def label_mask(poses: np.ndarray) -> np.ndarray:
    """Bool (n, 3): which angles a label array actually gives (NaN = not available)."""
    return np.isfinite(np.asarray(poses, np.float32))


PSEUDO_COLUMNS = ("name", "yaw", "pitch", "roll", "mirror_yaw", "mirror_pitch", "mirror_roll", "spread", "gt_yaw")


def read_pseudo_labels(
    path: str | os.PathLike, max_mirror_deg: float | None = None, max_gt_yaw_gap_deg: float | None = None
) -> dict[str, tuple[float, float, float]]:
    """Name -> (yaw, pitch, roll) of a pseudo-label CSV (`pseudo_label.write_pseudo_labels`).

    Args:
        max_mirror_deg: leave out faces whose crop and mirror disagree by more than this
            (mean over the angles, degrees): the teacher is unsure there.
        max_gt_yaw_gap_deg: leave out faces whose yaw is further than this from AFLW's ``gt_yaw``.

    Raises:
        DataError: for a missing or malformed file.
    """
    from qa_headpose.core.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"No pseudo-label file {path}; make it with: qa-headpose data pseudo-label")
    out = {}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if set(PSEUDO_COLUMNS) - set(reader.fieldnames or []):
                raise DataError(f"{path} is not a pseudo-label CSV (columns {list(PSEUDO_COLUMNS)})")
            for row in reader:
                pose = tuple(float(row[k]) for k in ("yaw", "pitch", "roll"))
                mirror = np.mean([float(row[f"mirror_{k}"]) for k in ("yaw", "pitch", "roll")])
                if max_mirror_deg is not None and mirror > max_mirror_deg:
                    continue
                if max_gt_yaw_gap_deg is not None and abs(pose[0] - _float(row["gt_yaw"])) > max_gt_yaw_gap_deg:
                    continue
                out[row["name"]] = pose
    except (OSError, ValueError, KeyError, csv.Error) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"Cannot read pseudo-labels {path}: {exc}") from None
    return out
