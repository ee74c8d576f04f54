"""Face sets from the real dataset layouts, the protocol filter and the fixed split. No TF.

A `FaceSet` keeps, per face, a *loose* crop of the original image (the landmark
box grown by `LOOSE_MARGIN` per side, clipped to the image) and the landmark box
inside it. Clipping the 0.6-margin crop to that loose crop is the same as clipping
it to the original image, so `preprocess.crop_face` gives FSA-Net's crop exactly,
and augmentation has context around the face to rotate and shift into.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import write_bytes
from qa_headpose.core.errors import DataError
from qa_headpose.inference.images import read_image
from qa_headpose.inference.preprocess import CROP_MARGIN, clipped_pixel_box, crop_face, landmark_box

logger = logging.getLogger(__name__)

LOOSE_MARGIN = 1.0
# Loose crops are stored at most this many pixels on their longer side.
LOOSE_MAX_SIDE = 256
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS_DIR = Path(__file__).with_name("splits")


@dataclasses.dataclass
class FaceSet:
    """Faces with their pose labels.

    Attributes:
        images: list of uint8 BGR loose crops (H_i, W_i, 3).
        boxes: float32 (n, 4) landmark boxes (x_min, y_min, x_max, y_max) in crop pixels.
        poses: float32 (n, 3) labels, (yaw, pitch, roll) in degrees.
        names: one identifier per face (file stem or npz index).
    """

    images: list[np.ndarray]
    boxes: np.ndarray
    poses: np.ndarray
    names: list[str]

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.poses = np.asarray(self.poses, np.float32).reshape(-1, 3)
        n = len(self.images)
        if not (len(self.boxes) == len(self.poses) == len(self.names) == n):
            raise DataError(
                "images, boxes, poses and names must have the same length. Received: "
                f"{n}, {len(self.boxes)}, {len(self.poses)}, {len(self.names)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray | list[int]) -> "FaceSet":
        """The faces at the given positions (an index array or a boolean mask)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, int)
        return FaceSet(
            [self.images[i] for i in index],
            self.boxes[index],
            self.poses[index],
            [self.names[i] for i in index],
        )

    def crops(self, size: int) -> np.ndarray:
        """FSA-Net crops of every face, uint8 (n, size, size, 3)."""
        out = np.empty((len(self), size, size, 3), np.uint8)
        for i, (image, box) in enumerate(zip(self.images, self.boxes)):
            out[i] = crop_face(image, box, size)
        return out


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


def loose_crop(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cuts the loose crop around a face box; returns (crop, box in crop pixels)."""
    try:
        x0, y0, x1, y1 = clipped_pixel_box(box, LOOSE_MARGIN, image.shape)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    crop = image[y0:y1, x0:x1]
    new_box = np.asarray(box, np.float32) - np.array([x0, y0, x0, y0], np.float32)
    scale = LOOSE_MAX_SIDE / max(crop.shape[:2])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        new_box *= np.array([size[0] / crop.shape[1], size[1] / crop.shape[0]] * 2, np.float32)
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop), new_box


def _load_mat_pair(image_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pose, box = read_mat_label(image_path.with_suffix(".mat"))
    crop, crop_box = loose_crop(read_image(image_path), box)
    return crop, crop_box, pose


def load_mat_folder(folder: str | os.PathLike, workers: int = 4) -> FaceSet:
    """Loads a 300W-LP / AFLW2000-3D folder: every image with a ``.mat`` beside it, recursively.

    Args:
        folder: the dataset folder.
        workers: decoding threads (OpenCV releases the GIL).

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
    with ThreadPoolExecutor(max_workers=workers) as pool:
        items = list(pool.map(_load_mat_pair, paths))
    names = [str(p.relative_to(folder).with_suffix("")) for p in paths]
    return FaceSet([c for c, _, _ in items], [b for _, b, _ in items], [p for _, _, p in items], names)


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
    poses = np.asarray(poses, np.float32)
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


def load_faces(path: str | os.PathLike, labels: str | os.PathLike = "aflw") -> FaceSet:
    """Loads an FSA-Net npz file or a 300W-LP/AFLW2000, BIWI or AFLW_extra folder, by what ``path`` is.

    A BIWI folder (``hpdb/`` or ``SS/frame_XXXXX_rgb.png``) is cropped around the face
    detector's boxes (`biwi.load_biwi_folder`). An AFLW_extra folder (``labels.csv`` +
    ``crops/``) takes ``labels`` (see `aflw_extra.load_aflw_extra`); angles it lacks are NaN.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"No such file or folder: {path}")
    if path.is_dir():
        from qa_headpose import aflw_extra, biwi  # biwi imports this module

        if aflw_extra.is_aflw_extra_folder(path):
            return aflw_extra.load_aflw_extra(path, labels)
        if biwi.is_biwi_folder(path):
            return biwi.load_biwi_folder(path)
        return load_mat_folder(path)
    if path.suffix == ".npz":
        return load_fsanet_npz(path)
    raise DataError(f"Expected an FSA-Net .npz file or a folder of images with .mat labels. Received: {path}")


def filter_protocol(faces: FaceSet, limit_deg: float = angles.ANGLE_LIMIT_DEG) -> tuple[FaceSet, int]:
    """Keeps the faces whose three angles lie within +-limit_deg; returns (kept, number dropped)."""
    mask = angles.within_limit(faces.poses, limit_deg)
    return faces.subset(mask), int((~mask).sum())


def is_val_name(name: str, val_fraction: float = 0.15) -> bool:
    """Stable split rule: the first 8 hex digits of sha1(file name) below val_fraction * 2**32."""
    digest = hashlib.sha1(Path(name).name.encode()).hexdigest()
    return int(digest[:8], 16) < val_fraction * 2**32


def read_split(name: str) -> set[str]:
    """Names in a committed split file of `qa_headpose/splits` (one per line)."""
    path = SPLITS_DIR / f"{name}.txt"
    if not path.is_file():
        raise DataError(f"No split file {path}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def split_train_val(faces: FaceSet, split: str | None = "aflw2000_val") -> tuple[FaceSet, FaceSet]:
    """Splits faces into (train, val) with a committed val list, or the hash rule when None.

    Names are compared by file name, so the split holds wherever the folder lies.
    """
    if split is None:
        is_val = np.array([is_val_name(n) for n in faces.names], bool)
    else:
        val_names = read_split(split)
        is_val = np.array([Path(n).name in val_names for n in faces.names], bool)
    return faces.subset(~is_val), faces.subset(is_val)
