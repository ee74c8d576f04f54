"""Drawing head poses on images: the head's three axes, a head-fixed cube, the face box. OpenCV only.

One convention for every function here, the one of `angles` (300W-LP / AFLW2000):
``R = angles.ypr_to_matrix((yaw, pitch, roll)) = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` and,
in the camera frame with x to the image right, y up and z towards the camera, the
head's own axes are the *rows* of R (the head's orientation is ``R.T``; checked
against the 68 3D landmarks of AFLW2000, median error 1.9 degrees). The axes are
drawn with an orthographic projection, image point = centre + size * (x, -y):

- red: the head's x axis, towards the subject's left ear (image right when frontal);
- green: the head's y axis, up through the top of the head;
- blue: the head's z axis, out of the face through the nose.

So yaw > 0 swings the blue axis to the image left, pitch > 0 lifts it, and roll > 0
turns the green axis clockwise on screen. Images are uint8 BGR and drawn in place.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from qa_headpose.core.angles import ypr_to_matrix

AXIS_COLORS = ((0, 0, 255), (0, 255, 0), (255, 0, 0))  # BGR: x red, y green, z blue
CUBE_FRONT_COLOR = (0, 0, 255)
CUBE_BACK_COLOR = (255, 128, 0)
CUBE_SIDE_COLOR = (0, 255, 0)
BOX_COLOR = (0, 255, 255)
LABEL_COLOR = (255, 255, 255)
LABEL_BACKGROUND = (32, 32, 32)  # a filled box: white text on white pixels would vanish


def head_axes(pose: Sequence[float]) -> np.ndarray:
    """The head's x, y, z axes in the camera frame (x right, y up, z towards the camera).

    Args:
        pose: (yaw, pitch, roll) in degrees (a `HeadPose` or any 3 numbers).

    Returns:
        float64 (3, 3): row i is head axis i (x, y, z) as a unit vector.
    """
    return ypr_to_matrix(np.asarray(pose, np.float64).reshape(3))


def project_axes(pose: Sequence[float], size: float) -> np.ndarray:
    """Image offsets of the three axis tips from the face centre.

    Args:
        pose: (yaw, pitch, roll) in degrees.
        size: axis length in pixels.

    Returns:
        float64 (3, 2): (dx, dy) pixels per axis (x, y, z), image y pointing down.
    """
    axes = head_axes(pose)
    return np.stack([axes[:, 0], -axes[:, 1]], axis=1) * float(size)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"Expected a uint8 BGR image (H, W, 3). Received: shape={shape}")


def _pt(xy: np.ndarray) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def draw_axes(
    image: np.ndarray,
    pose: Sequence[float],
    center: Sequence[float],
    size: float,
    thickness: int = 2,
) -> np.ndarray:
    """Draws the head's three axes (x red, y green, z blue) from ``center``.

    Args:
        image: uint8 BGR (H, W, 3); drawn in place.
        pose: (yaw, pitch, roll) in degrees.
        center: (x, y) pixels where the axes start (the face centre).
        size: axis length, pixels.
        thickness: line width, pixels.

    Returns:
        The same ``image``.

    Raises:
        ValueError: if ``image`` is not uint8 (H, W, 3).
    """
    _check_image(image)
    c = np.asarray(center, np.float64).reshape(2)
    tips = c + project_axes(pose, size)
    # The axis pointing away from the camera is drawn first so the nearer ones cover it.
    for i in np.argsort(head_axes(pose)[:, 2]):
        cv2.line(image, _pt(c), _pt(tips[i]), AXIS_COLORS[i], thickness, cv2.LINE_AA)
    return image


def cube_points(pose: Sequence[float], center: Sequence[float], size: float) -> np.ndarray:
    """Image points of a head-fixed cube of side ``size`` centred at ``center``.

    Returns:
        float64 (8, 2): corners 0-3 on the back face (z = -1/2), 4-7 on the front face
        (z = +1/2, the face side), each face in the order (-x, -y), (+x, -y), (+x, +y), (-x, +y).
    """
    corners = np.array(
        [[x, y, z] for z in (-0.5, 0.5) for x, y in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5))]
    )
    cam = corners @ head_axes(pose)  # head coordinates -> camera frame (rows of R are the axes)
    return np.asarray(center, np.float64).reshape(1, 2) + np.stack([cam[:, 0], -cam[:, 1]], axis=1) * float(size)


def draw_cube(
    image: np.ndarray,
    pose: Sequence[float],
    center: Sequence[float],
    size: float,
    thickness: int = 2,
) -> np.ndarray:
    """Draws a head-fixed cube around the face: front (face side) red, back orange, sides green.

    Args:
        image: uint8 BGR (H, W, 3); drawn in place.
        pose: (yaw, pitch, roll) in degrees.
        center: (x, y) pixels of the cube's centre (the face centre).
        size: side of the cube, pixels.
        thickness: line width, pixels.

    Returns:
        The same ``image``.

    Raises:
        ValueError: if ``image`` is not uint8 (H, W, 3).
    """
    _check_image(image)
    p = cube_points(pose, center, size)
    for face, color in ((range(0, 4), CUBE_BACK_COLOR), (None, CUBE_SIDE_COLOR), (range(4, 8), CUBE_FRONT_COLOR)):
        if face is None:
            for i in range(4):
                cv2.line(image, _pt(p[i]), _pt(p[i + 4]), color, thickness, cv2.LINE_AA)
            continue
        idx = list(face)
        for a, b in zip(idx, idx[1:] + idx[:1]):
            cv2.line(image, _pt(p[a]), _pt(p[b]), color, thickness, cv2.LINE_AA)
    return image


def text_box(text: str, origin: Sequence[float], scale: float = 0.5) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixels of the filled box `draw_text` puts behind ``text`` (origin: its bottom left)."""
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, _text_thickness(scale))
    x, y = _pt(np.asarray(origin, np.float64))
    pad = max(2, int(round(4 * scale)))
    return x - pad, y - h - pad, x + w + pad, y + baseline + pad


def _text_thickness(scale: float) -> int:
    return max(1, int(round(scale * 2)))


def draw_text(image: np.ndarray, text: str, origin: Sequence[float], scale: float = 0.5) -> np.ndarray:
    """Writes ``text`` in white on a filled dark box (`LABEL_BACKGROUND`), legible on any image.

    Args:
        image: uint8 BGR (H, W, 3); drawn in place.
        text: the label.
        origin: (x, y) pixels of the text's bottom left; the box reaches a few pixels beyond.
        scale: OpenCV font scale.

    Returns:
        The same ``image``.
    """
    _check_image(image)
    x0, y0, x1, y1 = text_box(text, origin, scale)
    cv2.rectangle(image, (x0, y0), (x1, y1), LABEL_BACKGROUND, cv2.FILLED)
    org = _pt(np.asarray(origin, np.float64))
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, LABEL_COLOR, _text_thickness(scale), cv2.LINE_AA)
    return image


def draw_face(
    image: np.ndarray,
    box: Sequence[float],
    pose: Sequence[float],
    mode: str = "axes",
    label: str | None = None,
) -> np.ndarray:
    """Draws one face: its box, its pose (axes or cube) at the box centre, and a label.

    Args:
        image: uint8 BGR (H, W, 3); drawn in place.
        box: (x_min, y_min, x_max, y_max) pixels.
        pose: (yaw, pitch, roll) in degrees.
        mode: "axes", "cube" or "both".
        label: text above the box; None writes the three angles.

    Returns:
        The same ``image``.

    Raises:
        ValueError: for an unknown mode or an image that is not uint8 (H, W, 3).
    """
    if mode not in ("axes", "cube", "both"):
        raise ValueError(f"mode must be 'axes', 'cube' or 'both'. Received: mode={mode!r}")
    _check_image(image)
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    thickness = max(1, int(round(side / 80)))
    cv2.rectangle(image, _pt((x0, y0)), _pt((x1, y1)), BOX_COLOR, max(1, thickness // 2), cv2.LINE_AA)
    center = ((x0 + x1) / 2, (y0 + y1) / 2)
    if mode in ("cube", "both"):
        draw_cube(image, pose, center, side * 0.9, thickness)
    if mode in ("axes", "both"):
        draw_axes(image, pose, center, side * 0.8, thickness + 1)
    if label is None:
        yaw, pitch, roll = (float(v) for v in pose)
        label = f"yaw {yaw:.0f} pitch {pitch:.0f} roll {roll:.0f}"
    scale = float(np.clip(side / 250, 0.4, 1.2))
    left, top, _, _ = text_box(label, (0, 0), scale)  # the box's reach left of and above the origin
    draw_text(image, label, (max(x0, -left), max(y0 - 6, -top)), scale)
    return image
