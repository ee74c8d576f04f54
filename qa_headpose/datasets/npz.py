"""FSA-Net .npz files: already-cropped faces (image, pose) and the box of the face inside each crop."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from qa_headpose.core.atomic import write_bytes
from qa_headpose.core.errors import DataError
from qa_headpose.datasets.faceset import FaceSet
from qa_headpose.inference.preprocess import CROP_MARGIN


def fsanet_inner_box(size_hw: tuple[int, int], margin: float = CROP_MARGIN) -> np.ndarray:
    """Landmark box inside an FSA-Net crop that was cut with ``margin`` per side."""
    h, w = size_hw
    lo, hi = margin / (1 + 2 * margin), (1 + margin) / (1 + 2 * margin)
    return np.array([lo * w, lo * h, hi * w, hi * h], np.float32)


def load_fsanet_npz(path: str | os.PathLike) -> FaceSet:
    """Loads an FSA-Net npz: ``image`` uint8 (n, S, S, 3) BGR crops, ``pose`` (n, 3) yaw/pitch/roll.

    Labels beyond +-99 degrees are kept here; `filter_protocol` drops (and counts) them.

    Raises:
        DataError: for a missing/corrupt file, missing keys, bad shapes, mismatched lengths
            or NaN/inf labels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Not a file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"image", "pose"} - set(npz.files)
            if missing:
                raise DataError(f"{path} lacks the key(s) {sorted(missing)}; expected 'image' and 'pose'")
            images, poses = npz["image"], npz["pose"]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"Cannot read npz {path}: {exc}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise DataError(f"{path}: 'image' must be uint8 (n, H, W, 3). Received: {images.dtype} {images.shape}")
    try:
        poses = np.asarray(poses, np.float32)
    except (TypeError, ValueError):  # strings, objects: the file's fault, reported as such
        raise DataError(f"{path}: 'pose' must hold numbers (degrees). Received dtype {poses.dtype}") from None
    if poses.ndim != 2 or poses.shape[1] != 3 or len(poses) != len(images):
        raise DataError(f"{path}: 'pose' must be (n, 3) with n = {len(images)}. Received: {poses.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(poses), axis=1))
    if bad.size:
        raise DataError(f"{path}: 'pose' holds NaN or inf in {bad.size} row(s), the first at index {bad[0]}")
    box = fsanet_inner_box(images.shape[1:3])
    names = [f"{path.stem}:{i}" for i in range(len(images))]
    return FaceSet(list(images), np.tile(box, (len(images), 1)), poses, names)


def save_fsanet_npz(faces: FaceSet, path: str | os.PathLike, size: int = 64) -> None:
    """Writes the faces' FSA-Net crops as an npz in FSA-Net's layout (atomically)."""
    buffer = io.BytesIO()
    np.savez(buffer, image=faces.crops(size), pose=faces.poses.astype(np.float32))
    write_bytes(path, buffer.getvalue())
