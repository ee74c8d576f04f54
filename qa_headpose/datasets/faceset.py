"""Face sets from the real dataset layouts, the protocol filter and the fixed split. No TF.

A `FaceSet` keeps, per face, a *loose* crop of the original image (the landmark
box grown by `LOOSE_MARGIN` per side, clipped to the image) and the landmark box
inside it. Clipping the 0.6-margin crop to that loose crop is the same as clipping
it to the original image, so `preprocess.crop_face` gives FSA-Net's crop exactly,
and augmentation has context around the face to rotate and shift into.
"""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.errors import DataError
from qa_headpose.inference.preprocess import clipped_pixel_box, crop_face

logger = logging.getLogger(__name__)

LOOSE_MARGIN = 1.0
# Loose crops are stored at most this many pixels on their longer side.
LOOSE_MAX_SIDE = 256
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


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


def filter_protocol(
    faces: FaceSet, limit_deg: float = angles.ANGLE_LIMIT_DEG, unlabelled_ok: bool = False
) -> tuple[FaceSet, int]:
    """Keeps the faces whose three angles lie within +-limit_deg; returns (kept, number dropped).

    ``unlabelled_ok``: a NaN angle (not annotated) passes; a face must still have one annotated angle.
    """
    poses = faces.poses
    if unlabelled_ok:
        poses = np.where(np.isnan(poses), 0.0, poses)
        poses[np.isnan(faces.poses).all(1)] = np.nan
    mask = angles.within_limit(poses, limit_deg)
    return faces.subset(mask), int((~mask).sum())
