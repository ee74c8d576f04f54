"""Train-split augmentation with exact pose labels. numpy + OpenCV, no TF.

Geometry (flip, in-plane rotation, box scale/shift jitter) is one affine warp from
the loose crop to the model input; the label follows through `angles`.
"""

from __future__ import annotations

import cv2
import numpy as np

from qa_headpose.core import angles
from qa_headpose.inference.preprocess import CROP_MARGIN, crop_face, enlarge_box
from qa_headpose.training.config import AugmentConfig


def warp_face(
    image: np.ndarray,
    box: np.ndarray,
    size: int,
    theta_deg: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """The FSA-Net crop of ``box``, rotated, rescaled, shifted and flipped, as one warp.

    Args:
        image: uint8 BGR (H, W, 3).
        box: landmark box (x_min, y_min, x_max, y_max), pixels.
        size: output side, pixels.
        theta_deg: counter-clockwise rotation of the content on screen, degrees.
        scale: factor on the enlarged box's width and height (> 1 zooms out).
        shift: box centre shift, as fractions of the enlarged box's width and height.
        flip: mirror the output horizontally.

    Returns:
        uint8 (size, size, 3). Pixels outside the image repeat the border.
    """
    x0, y0, x1, y1 = enlarge_box(box, CROP_MARGIN)
    cx = (x0 + x1) / 2 + shift[0] * (x1 - x0)
    cy = (y0 + y1) / 2 + shift[1] * (y1 - y0)
    half_w, half_h = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    # Clip to the image as crop_face does, so an un-jittered warp is the FSA-Net crop.
    h, w = image.shape[:2]
    x0, x1 = max(cx - half_w, 0.0), min(cx + half_w, float(w))
    y0, y1 = max(cy - half_h, 0.0), min(cy + half_h, float(h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        x0, y0, x1, y1 = cx - half_w, cy - half_h, cx + half_w, cy + half_h
    bw, bh, cx, cy = x1 - x0, y1 - y0, (x0 + x1) / 2, (y0 + y1) / 2
    # Shrink first with area averaging, so the bilinear warp never aliases.
    pre = min(1.0, 1.5 * size / min(bw, bh))
    if pre < 1.0:
        image = cv2.resize(image, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
        cx, cy, bw, bh = cx * pre, cy * pre, bw * pre, bh * pre
    rot = cv2.getRotationMatrix2D((float(cx), float(cy)), float(theta_deg), 1.0)
    sx, sy = size / bw, size / bh
    affine = np.diag([sx, sy]) @ rot
    affine[:, 2] += np.array([size / 2 - sx * cx, size / 2 - sy * cy])
    if flip:
        affine[0] = -affine[0]
        affine[0, 2] += size - 1  # pixel i -> size - 1 - i, as array[:, ::-1]
    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def augment_face(
    image: np.ndarray,
    box: np.ndarray,
    pose: np.ndarray,
    size: int,
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One random augmentation of a face and its exact label.

    Args:
        image: uint8 BGR loose crop; box: its landmark box; pose: (yaw, pitch, roll) degrees.
        size: output side; cfg: what to randomise; rng: the random source.

    Returns:
        (uint8 (size, size, 3) crop, float32 (3,) pose in degrees).
    """
    pose = np.asarray(pose, np.float32)
    theta = float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)) if cfg.rotate_deg > 0 else 0.0
    scale = float(rng.uniform(1 - cfg.scale_jitter, 1 + cfg.scale_jitter)) if cfg.scale_jitter > 0 else 1.0
    shift = tuple(rng.uniform(-cfg.shift_jitter, cfg.shift_jitter, 2)) if cfg.shift_jitter > 0 else (0.0, 0.0)
    flip = bool(cfg.flip and rng.random() < 0.5)
    if theta:
        new_pose = angles.rotate_pose_in_plane(pose, theta)
        if not angles.within_limit(new_pose)[0]:
            theta, new_pose = 0.0, pose  # keep labels inside the protocol's range
        pose = new_pose
    if theta or scale != 1.0 or shift != (0.0, 0.0) or flip:
        crop = warp_face(image, box, size, theta, scale, shift, flip)
    else:
        crop = crop_face(image, box, size)
    if flip:
        pose = angles.flip_pose(pose)
    if cfg.black_border and rng.random() < cfg.black_border:
        crop = black_border(crop, rng)
    if cfg.photometric:
        crop = jitter_photometric(crop, rng)
    return crop, pose.astype(np.float32)


BORDER_MAX_FRACTION = 0.25


def black_border(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop with a random black band on each side, each up to `BORDER_MAX_FRACTION` of the side.

    AFLW_extra's crops reach past their 120x120 jpg and are padded black (about 12% of the
    side on each side, on average); a teacher that never saw such bands reads them as pitch.
    """
    size = crop.shape[0]
    top, bottom, left, right = (int(rng.uniform(0, BORDER_MAX_FRACTION) * size) for _ in range(4))
    return blacken_sides(crop, top, bottom, left, right)


def blacken_sides(crops: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """A copy of a crop (H, W, C) or of a batch of them (..., H, W, C) with black bands of these widths."""
    out = crops.copy()
    height, width = out.shape[-3:-1]
    out[..., :top, :, :] = 0
    out[..., height - bottom :, :, :] = 0
    out[..., :, :left, :] = 0
    out[..., :, width - right :, :] = 0
    return out


def jitter_photometric(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, per-channel gain, occasional grayscale, blur and noise."""
    x = crop.astype(np.float32)
    if rng.random() < 0.1:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    gain = rng.uniform(0.7, 1.3) * rng.uniform(0.9, 1.1, size=3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.7, 1.3) + mean
    x = x * gain + rng.uniform(-20, 20)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.2:
        x = x + rng.normal(0, rng.uniform(1, 6), x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)
