"""Pointing'04 (the Head Pose Image Database, INRIA 2004): studio photos of a second capture. No TF.

Layout (see ``../shared/data/Pointing04_dev/README.md``): ``PersonNN/personNNSI<tilt><pan>.jpg`` with a ``.txt``
beside each whose last four numbers are the face box as centre x, centre y, width, height. Labels in this
project's convention: yaw = +pan, pitch = +tilt; roll is not annotated, so it is NaN (never scored). The labels
are the directions of the markers the person looked at, coarse and larger than the head's own turn at large
angles: read the error by pan band (`qa_headpose.evaluation.bands`). For checking models, never for training.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from qa_headpose.core.errors import DataError
from qa_headpose.datasets.faceset import FaceSet, loose_crop
from qa_headpose.inference.images import read_image

# personNN S I <tilt> <pan>: person, series (1 or 2), image index, signed tilt, signed pan.
NAME = re.compile(r"^person(\d\d)(\d)(\d\d)([+-]\d+)([+-]\d+)$")


def is_pointing04_folder(path: str | os.PathLike) -> bool:
    """True for a folder laid out as Pointing'04 (``PersonNN/personNN*.jpg`` with ``.txt`` boxes)."""
    return any(Path(path).glob("Person[0-9][0-9]/person*.txt"))


def parse_name(stem: str) -> tuple[float, float]:
    """(yaw, pitch) in degrees from a file stem: yaw = +pan, pitch = +tilt.

    Raises:
        DataError: for a name not of the form ``personNNSI<tilt><pan>``.
    """
    match = NAME.match(stem)
    if match is None:
        raise DataError(f"Not a Pointing'04 file name (personNNSI<tilt><pan>): {stem}")
    tilt, pan = float(match.group(4)), float(match.group(5))
    return pan, tilt


def read_box(path: str | os.PathLike) -> np.ndarray:
    """The face box (x_min, y_min, x_max, y_max) from a ``.txt`` whose last four numbers are cx, cy, w, h.

    Raises:
        DataError: for a file without four numbers at its end or a box of no area.
    """
    numbers = []
    for line in Path(path).read_text(errors="replace").split():
        try:
            numbers.append(float(line))
        except ValueError:
            continue
    if len(numbers) < 4:
        raise DataError(f"{path}: expected the face box as 4 numbers (centre x, centre y, width, height)")
    cx, cy, w, h = numbers[-4:]
    if not (w > 0 and h > 0):
        raise DataError(f"{path}: the face box has no area (width {w}, height {h})")
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


def load_pointing04_folder(folder: str | os.PathLike) -> FaceSet:
    """Every face of a Pointing'04 folder, its box the annotated one (the model's crop adds 0.6 per side).

    Returns:
        A `FaceSet` named ``PersonNN/<stem>``, poses (pan, tilt, NaN).

    Raises:
        DataError: if no labelled image is found, or a name or box is unreadable.
    """
    folder = Path(folder)
    texts = sorted(folder.glob("Person[0-9][0-9]/person*.txt"))
    images, boxes, poses, names = [], [], [], []
    for text in texts:
        image_path = text.with_suffix(".jpg")
        if not image_path.is_file():
            continue
        yaw, pitch = parse_name(text.stem)
        crop, box = loose_crop(read_image(image_path), read_box(text))
        images.append(crop)
        boxes.append(box)
        poses.append((yaw, pitch, np.nan))
        names.append(f"{text.parent.name}/{text.stem}")
    if not images:
        raise DataError(f"No Pointing'04 image with its .txt box in {folder}")
    return FaceSet(images, boxes, poses, names)
