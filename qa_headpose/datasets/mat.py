"""AFLW2000 / 300W-LP folders: an image beside each .mat label (Pose_Para angles, pt2d landmarks)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.errors import DataError
from qa_headpose.datasets.faceset import IMAGE_SUFFIXES, FaceSet, loose_crop
from qa_headpose.inference.images import read_image
from qa_headpose.inference.preprocess import landmark_box


def read_mat_label(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads a 300W-LP / AFLW2000-3D ``.mat`` label.

    Returns:
        (pose, box): (yaw, pitch, roll) degrees float32 (3,), and the landmark box (4,).

    Raises:
        DataError: if the file cannot be read or lacks ``Pose_Para`` / ``pt2d``.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"Cannot read .mat file {path}: {exc}") from None
    for key in ("Pose_Para", "pt2d"):
        if key not in mat:
            raise DataError(f"{path} has no '{key}' entry")
    para = np.asarray(mat["Pose_Para"], dtype=np.float64).ravel()
    if para.size < 3 or not np.all(np.isfinite(para[:3])):
        raise DataError(f"{path}: Pose_Para must hold 3 finite angles. Received: {para[:3]}")
    try:
        box = landmark_box(mat["pt2d"])
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    return angles.pose_para_to_ypr(para), box


def _load_mat_pair(image_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pose, box = read_mat_label(image_path.with_suffix(".mat"))
    crop, crop_box = loose_crop(read_image(image_path), box)
    return crop, crop_box, pose


def load_mat_folder(
    folder: str | os.PathLike, workers: int = 4, progress: Callable[[int, int], None] | None = None
) -> FaceSet:
    """Loads a 300W-LP / AFLW2000-3D folder: every image with a ``.mat`` beside it, recursively.

    Args:
        folder: the dataset folder.
        workers: decoding threads (OpenCV releases the GIL).
        progress: called with (faces read, faces in the folder) as the reading goes on.

    Returns:
        A `FaceSet` named by the image path relative to ``folder``, without suffix.

    Raises:
        DataError: if the folder is missing or holds no image with a ``.mat`` label.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Not a folder: {folder}")
    paths = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".mat").is_file()
    )
    if not paths:
        raise DataError(f"No image with a .mat label beside it in {folder}")
    items = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for item in pool.map(_load_mat_pair, paths):
            items.append(item)
            if progress is not None:
                progress(len(items), len(paths))
    names = [str(p.relative_to(folder).with_suffix("")) for p in paths]
    return FaceSet([c for c, _, _ in items], [b for _, b, _ in items], [p for _, _, p in items], names)
