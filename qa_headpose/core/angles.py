"""Angle order, Euler convention and the exact label transforms. Pure numpy.

The order is (yaw, pitch, roll), in degrees, everywhere in this package: labels,
model output, return values, CSV/JSON columns and CLI output.

Convention (the one of 300W-LP / AFLW2000-3D, as used by Hopenet, FSA-Net and
6DRepNet): ``Pose_Para[0][:3]`` holds (pitch, yaw, roll) in radians, and
``M = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (`ypr_to_matrix`). In a camera frame with x
to the image right, y up and z towards the viewer, ``M`` maps camera coordinates to
head coordinates: the head's rotation in the camera frame is ``M.T``. Seen in the
image (checked against AFLW2000's landmarks and BIWI's depth, see the tests):

- yaw > 0: the face turns towards the image left (the subject's right);
- pitch > 0: the face looks up;
- roll > 0: the head tilts clockwise on screen (the eye on the image right is lower).

A horizontal image flip maps (yaw, pitch, roll) -> (-yaw, pitch, -roll). Rotating
the image content counter-clockwise on screen by ``theta`` rotates the head by
``Rz(theta)`` in the camera frame, so ``M`` becomes ``M @ Rz(-theta)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

ANGLE_ORDER: tuple[str, str, str] = ("yaw", "pitch", "roll")
# The standard protocol keeps faces whose three angles are all within this bound.
ANGLE_LIMIT_DEG = 99.0


class _Angles(NamedTuple):
    yaw: float
    pitch: float
    roll: float


class HeadPose(_Angles):
    """Head pose in degrees, in the package's one angle order: a (yaw, pitch, roll) tuple.

    Attributes:
        yaw, pitch, roll: degrees.
        saturated: True when the model's output for at least one angle lay at an end of
            its int8 range (for the shipped model -100 or +99.22 degrees): the true angle
            may be anywhere beyond it, so treat the pose as "at least this far". Not part
            of the tuple (a pose still unpacks to three angles and compares by them).
    """

    saturated: bool = False  # the default; set per instance only when True

    def __new__(cls, yaw: float, pitch: float, roll: float, saturated: bool = False) -> "HeadPose":
        self = super().__new__(cls, yaw, pitch, roll)
        if saturated:
            self.saturated = True
        return self

    def __repr__(self) -> str:
        text = f"HeadPose(yaw={self.yaw!r}, pitch={self.pitch!r}, roll={self.roll!r}"
        return text + (", saturated=True)" if self.saturated else ")")

    def __reduce__(self) -> tuple:
        return (type(self), (*self, self.saturated))

    def _replace(self, **changes: float) -> "HeadPose":
        """A copy with some angles (or ``saturated``) changed."""
        values = {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll, "saturated": self.saturated}
        return HeadPose(**{**values, **changes})

    def as_array(self) -> np.ndarray:
        """Returns the angles as a float32 array of shape (3,), (yaw, pitch, roll)."""
        return np.asarray(self, dtype=np.float32)


def from_model_output(row: np.ndarray, saturated: bool | np.ndarray = False) -> HeadPose:
    """Turns one model output row (3,) in degrees into a `HeadPose`.

    Args:
        row: (yaw, pitch, roll) degrees, shape (3,).
        saturated: whether the output lay at an end of its integer range, one flag or one per angle.
    """
    row = np.asarray(row, dtype=np.float64).reshape(3)
    return HeadPose(float(row[0]), float(row[1]), float(row[2]), bool(np.any(saturated)))


def pose_para_to_ypr(pose_para: np.ndarray) -> np.ndarray:
    """Converts 300W-LP/AFLW2000 ``Pose_Para`` to (yaw, pitch, roll) degrees.

    Args:
        pose_para: array whose first three values are (pitch, yaw, roll) in radians.

    Returns:
        float32 array (3,): (yaw, pitch, roll) in degrees.
    """
    pitch, yaw, roll = np.degrees(np.asarray(pose_para, dtype=np.float64).ravel()[:3])
    return np.array([yaw, pitch, roll], dtype=np.float32)


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def ypr_to_matrix(ypr_deg: np.ndarray) -> np.ndarray:
    """Builds ``M = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (camera -> head; the head's rotation is ``M.T``).

    Args:
        ypr_deg: (yaw, pitch, roll) in degrees, shape (3,).

    Returns:
        float64 array (3, 3).
    """
    yaw, pitch, roll = np.radians(np.asarray(ypr_deg, dtype=np.float64).reshape(3))
    return _rz(roll) @ _ry(yaw) @ _rx(pitch)


def matrix_to_ypr(matrix: np.ndarray) -> np.ndarray:
    """Inverse of `ypr_to_matrix`; yaw is kept in [-90, 90] degrees.

    Args:
        matrix: rotation matrix (3, 3).

    Returns:
        float64 array (3,): (yaw, pitch, roll) in degrees.
    """
    r = np.asarray(matrix, dtype=np.float64)
    yaw = np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2]))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.degrees([yaw, pitch, roll])


def flip_pose(ypr_deg: np.ndarray) -> np.ndarray:
    """Label of the horizontally flipped image: yaw -> -yaw, roll -> -roll, pitch kept."""
    ypr = np.array(ypr_deg, dtype=np.float32, copy=True).reshape(-1, 3)
    ypr[:, 0] *= -1
    ypr[:, 2] *= -1
    return ypr.reshape(np.shape(ypr_deg))


def average_with_mirror(direct: np.ndarray, of_mirror: np.ndarray) -> np.ndarray:
    """The mean of a crop's pose and the pose its mirror image gives, flipped back (test-time mirroring).

    A model's errors on a face and on its mirror image are partly independent, so the mean
    is more accurate than either (0.06-0.08 degrees for the shipped models, docs/extra_faces.md).

    Args:
        direct: (..., 3) degrees predicted for the crops.
        of_mirror: (..., 3) degrees predicted for the same crops flipped horizontally.
    """
    return ((np.asarray(direct, np.float32) + flip_pose(of_mirror)) / 2).astype(np.float32)


def rotate_pose_in_plane(ypr_deg: np.ndarray, theta_deg: float) -> np.ndarray:
    """Label after rotating the image content counter-clockwise on screen by theta.

    Args:
        ypr_deg: (yaw, pitch, roll) in degrees, shape (3,).
        theta_deg: in-plane rotation of the image, degrees, counter-clockwise as displayed
            (the sign of ``cv2.getRotationMatrix2D``).

    Returns:
        float32 array (3,): the new (yaw, pitch, roll) in degrees.
    """
    rotated = ypr_to_matrix(ypr_deg) @ _rz(np.radians(-theta_deg))
    return matrix_to_ypr(rotated).astype(np.float32)


def within_limit(poses_deg: np.ndarray, limit_deg: float = ANGLE_LIMIT_DEG) -> np.ndarray:
    """Boolean mask (n,) of the rows whose three angles all lie within +-limit_deg."""
    poses = np.asarray(poses_deg, dtype=np.float64).reshape(-1, 3)
    return np.all(np.abs(poses) <= limit_deg, axis=1) & np.all(np.isfinite(poses), axis=1)


def mean_absolute_errors(pred_deg: np.ndarray, true_deg: np.ndarray) -> dict[str, float]:
    """Per-angle MAE and their mean, the FSA-Net protocol.

    Args:
        pred_deg: (n, 3) predictions in degrees, (yaw, pitch, roll).
        true_deg: (n, 3) labels in degrees, same order.

    Returns:
        dict with keys ``yaw``, ``pitch``, ``roll``, ``mean`` (degrees) and ``count``.

    Raises:
        ValueError: if the shapes differ or are not (n, 3) with n > 0.
    """
    pred = np.asarray(pred_deg, dtype=np.float64)
    true = np.asarray(true_deg, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != 3 or len(pred) == 0:
        raise ValueError(f"Expected two (n, 3) arrays with n > 0. Received: {pred.shape} and {true.shape}")
    per_angle = np.mean(np.abs(pred - true), axis=0)
    result = {name: float(v) for name, v in zip(ANGLE_ORDER, per_angle)}
    result["mean"] = float(per_angle.mean())
    result["count"] = int(len(pred))
    return result
