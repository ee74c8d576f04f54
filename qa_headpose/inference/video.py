"""Video and webcam: reading and writing frames, per-face tracking, temporal smoothing. No TF.

Tracking: each frame's faces are matched to the tracks of earlier frames greedily by
box IoU (highest first, at least `TRACK_IOU`); an unmatched face starts a new track,
and a track unseen for `TRACK_MAX_MISSED` frames ends. A track's id is the ``face``
field of its results.

Smoothing (optional, per track): the One-Euro filter (Casiez, Roussel and Vogel,
CHI 2012), an exponential smoother whose cutoff frequency rises with speed, so a
still head is steady and a turning head does not lag much:
``cutoff = min_cutoff + beta * speed``, ``alpha = 1 / (1 + 1 / (2 * pi * cutoff * dt))``.
The pose is filtered on its own (yaw, pitch, roll) angles (`PoseFilter`), never through
a rotation matrix: a matrix has two Euler readings, and reading it back would fold a
yaw of 95 into 85 with pitch and roll turned by 180 (and near yaw 90 split pitch and
roll arbitrarily). Each step moves the filtered pose ``alpha`` of the way towards the
new one, so the output stays between the inputs: a yaw of +-85..+-99 stays there,
and a turn from -95 to +95 passes through 0. Pitch and roll are angles on a circle
and take the short way across +-180 (179 -> -179 is a 2 degree step); yaw, the middle
angle of the convention (a latitude, canonically within +-90), is never wrapped.
``speed`` is the (itself low-passed) norm of the angle change, degrees per second.
The box centre and size get the same filter in pixels.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from qa_headpose.core.angles import HeadPose
from qa_headpose.core.atomic import commit, temp_path
from qa_headpose.core.errors import DataError
from qa_headpose.inference.blazeface import box_iou
from qa_headpose.inference.images import to_bgr_uint8
from qa_headpose.inference.results import FaceResult

TRACK_IOU = 0.3
TRACK_MAX_MISSED = 10
DEFAULT_FPS = 30.0
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


@dataclasses.dataclass(frozen=True)
class SmoothConfig:
    """One-Euro smoothing of video poses and boxes.

    Fields:
        min_cutoff: cutoff frequency at rest, Hz (lower = smoother, more lag).
        beta: cutoff increase per degree/second of head rotation speed.
        box_beta: cutoff increase per pixel/second of box motion.
        d_cutoff: cutoff of the speed estimate, Hz.
    """

    min_cutoff: float = 1.0
    beta: float = 0.02
    box_beta: float = 0.01
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        if not self.min_cutoff > 0 or not self.d_cutoff > 0:
            raise ValueError(
                f"Cutoffs must be > 0 Hz. Received: min_cutoff={self.min_cutoff}, d_cutoff={self.d_cutoff}"
            )
        if self.beta < 0 or self.box_beta < 0:
            raise ValueError(f"beta must be >= 0. Received: beta={self.beta}, box_beta={self.box_beta}")


def _alpha(cutoff: float, dt: float) -> float:
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))


class OneEuroFilter:
    """One-Euro filter of a vector signal (e.g. a box's centre and size, pixels).

    Args:
        min_cutoff: cutoff at rest, Hz.
        beta: cutoff increase per unit/second of speed.
        d_cutoff: cutoff of the speed estimate, Hz.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx = 0.0
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filters sample ``x`` taken at time ``t`` (seconds); returns the smoothed value."""
        x = np.asarray(x, np.float64)
        if self._x is None or t <= self._t:
            self._x, self._t = x.copy(), t
            return x
        dt = t - self._t
        speed = float(np.linalg.norm(x - self._x)) / dt
        self._dx += _alpha(self.d_cutoff, dt) * (speed - self._dx)
        a = _alpha(self.min_cutoff + self.beta * self._dx, dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


def _wrap_deg(a: np.ndarray) -> np.ndarray:
    """Angles in degrees wrapped to [-180, 180)."""
    return (np.asarray(a, np.float64) + 180.0) % 360.0 - 180.0


# Which of (yaw, pitch, roll) are circular (wrapped at +-180): pitch and roll, not yaw.
_CIRCULAR = np.array([False, True, True])


class PoseFilter:
    """One-Euro filter of head poses on their (yaw, pitch, roll) angles, keeping each angle's branch.

    The filtered pose moves ``alpha`` of the way from the last output to the new pose,
    angle by angle, so each output lies between the previous output and the input:
    a yaw of 95 stays 95 (a rotation matrix would read it back as 85 with pitch and roll
    turned by 180), and a sign change (-95 -> 95) passes through 0. Pitch and roll take
    the short way across +-180; yaw is never wrapped. ``saturated`` is passed through
    from each input pose.

    Args:
        min_cutoff: cutoff at rest, Hz.
        beta: cutoff increase per degree/second of rotation speed.
        d_cutoff: cutoff of the speed estimate, Hz.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.02, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x: np.ndarray | None = None
        self._speed = 0.0
        self._t = 0.0

    def __call__(self, pose: HeadPose | np.ndarray, t: float) -> HeadPose:
        """Filters the pose (yaw, pitch, roll degrees) observed at time ``t`` (seconds)."""
        x = np.asarray(pose, np.float64).reshape(3)
        saturated = bool(getattr(pose, "saturated", False))
        if not np.all(np.isfinite(x)):
            return HeadPose(*(float(v) for v in x), saturated)  # passed on as it is, not mixed into the state
        if self._x is None or t <= self._t:
            self._x, self._t = x.copy(), t
            return HeadPose(*(float(v) for v in x), saturated)
        dt = t - self._t
        step = x - self._x
        step[_CIRCULAR] = _wrap_deg(step[_CIRCULAR])
        self._speed += _alpha(self.d_cutoff, dt) * (float(np.linalg.norm(step)) / dt - self._speed)
        a = _alpha(self.min_cutoff + self.beta * self._speed, dt)
        out = self._x + a * step
        # Keep pitch and roll in the input's range: back across +-180 when a step crossed it.
        out[_CIRCULAR] = np.where(np.abs(out[_CIRCULAR]) > 180.0, _wrap_deg(out[_CIRCULAR]), out[_CIRCULAR])
        self._x, self._t = out, t
        return HeadPose(float(out[0]), float(out[1]), float(out[2]), saturated)


class _Track:
    def __init__(self, track_id: int, smooth: SmoothConfig | None) -> None:
        self.id = track_id
        self.box: tuple[float, float, float, float] | None = None
        self.missed = 0
        self.rotation = PoseFilter(smooth.min_cutoff, smooth.beta, smooth.d_cutoff) if smooth else None
        self.box_filter = OneEuroFilter(smooth.min_cutoff, smooth.box_beta, smooth.d_cutoff) if smooth else None

    def update(self, result: FaceResult, t: float) -> FaceResult:
        self.missed = 0
        self.box = result.box
        box, pose = result.box, result.pose
        if self.rotation is not None:
            pose = self.rotation(result.pose, t)
            x0, y0, x1, y1 = result.box
            cx, cy, w, h = self.box_filter(np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]), t)
            box = (float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2))
        return FaceResult(box, result.score, pose, self.id)


class FaceTracker:
    """Gives each face a stable id across frames by box overlap, and optionally smooths it.

    Args:
        smooth: a `SmoothConfig` to filter each track's pose and box; None leaves them raw.
        iou_threshold: lowest IoU between a track's last box and a face to continue it.
        max_missed: frames a track may go unseen before it ends.
    """

    def __init__(
        self, smooth: SmoothConfig | None = None, iou_threshold: float = TRACK_IOU, max_missed: int = TRACK_MAX_MISSED
    ) -> None:
        self.smooth = smooth
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.tracks: list[_Track] = []
        self._next_id = 0

    def update(self, results: list[FaceResult], t: float) -> list[FaceResult]:
        """Assigns track ids (and smooths) one frame's faces.

        Args:
            results: the frame's faces from `HeadPoseEstimator.predict_image`.
            t: the frame's time, seconds.

        Returns:
            The same faces, in the same order, with ``face`` set to the track id (and the
            pose and box smoothed when configured).
        """
        pairs = []
        for ti, track in enumerate(self.tracks):
            ious = box_iou(np.array(track.box), np.array([r.box for r in results]).reshape(-1, 4))
            pairs += [(float(iou), ti, ri) for ri, iou in enumerate(ious) if iou >= self.iou_threshold]
        assigned: dict[int, _Track] = {}
        used = set()
        for _, ti, ri in sorted(pairs, reverse=True):
            if ti not in used and ri not in assigned:
                assigned[ri] = self.tracks[ti]
                used.add(ti)
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.missed += 1
        out = []
        for ri, result in enumerate(results):
            track = assigned.get(ri)
            if track is None:
                track = _Track(self._next_id, self.smooth)
                self._next_id += 1
                self.tracks.append(track)
            out.append(track.update(result, t))
        self.tracks = [tr for tr in self.tracks if tr.missed <= self.max_missed]
        return out


def open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    """Opens a video file for reading, positioned at its first frame.

    Raises:
        DataError: if the file is missing, OpenCV cannot open it as a video, or not even
            its first frame can be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Not a file: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"Empty file: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"Cannot open video: {path}")
    # A header OpenCV accepts may still hold no decodable frame (a cut file): read one,
    # then open again at the start (seeking back is not exact with every codec).
    ok, _ = capture.read()
    capture.release()
    if not ok:
        raise DataError(f"No frame could be read from {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"Cannot open video: {path}")
    return capture


def open_camera(index: int) -> cv2.VideoCapture:
    """Opens webcam number ``index``.

    Raises:
        DataError: if there is no such camera (a negative index included: OpenCV's V4L2
            backend crashes on one) or it cannot be read.
    """
    if not 0 <= int(index) < 2**31:
        raise DataError(f"Cannot open camera {index}: camera indexes are 0, 1, ...")
    capture = cv2.VideoCapture(int(index))
    ok = capture.isOpened()
    if ok:
        ok, _ = capture.read()
    if not ok:
        capture.release()
        raise DataError(f"Cannot open camera {index}: no such device, no access, or it returns no frame")
    return capture


def video_fps(capture: cv2.VideoCapture) -> float:
    """The capture's frame rate, or `DEFAULT_FPS` when it reports none or nonsense."""
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if 1.0 <= fps <= 1000.0 else DEFAULT_FPS


def frame_count(capture: cv2.VideoCapture, max_frames: int | None = None) -> int | None:
    """The frames a capture will give: its declared count, at most ``max_frames``; None when unknown."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if count and count > 0 else None
    return max_frames if count is None else min(count, max_frames or count)


def iter_frames(capture: cv2.VideoCapture, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (frame index, uint8 BGR frame) until the end, or ``max_frames`` frames."""
    index = 0
    while max_frames is None or index < max_frames:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        yield index, to_bgr_uint8(frame, f"frame {index}")
        index += 1


class VideoSink:
    """Writes frames to a video file, atomically: a temporary file renamed on `close`.

    Args:
        path: output file; ``.mp4``/``.m4v``/``.mov`` (mp4v) or ``.avi`` (MJPG).
        fps: frame rate of the file.

    Raises:
        ValueError: for another suffix.
    """

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCC:
            raise ValueError(f"Video output must end in one of {sorted(VIDEO_FOURCC)}. Received: {self.path}")
        self.fps = float(fps)
        self._fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[suffix])
        self._tmp = temp_path(self.path)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Appends one uint8 BGR frame; every frame must have the first one's size.

        Raises:
            DataError: if OpenCV cannot write this file.
            ValueError: for a frame of another size.
        """
        h, w = frame.shape[:2]
        if self._writer is None:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self._tmp), self._fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                self._tmp.unlink(missing_ok=True)
                raise DataError(f"OpenCV cannot write the video {self.path}")
            self._size = (w, h)
        elif (w, h) != self._size:
            raise ValueError(f"All frames must be {self._size[0]}x{self._size[1]}. Received: {w}x{h}")
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finishes the file and moves it into place (nothing is written without frames)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            commit(self._tmp, self.path)

    def abort(self) -> None:
        """Drops the partial file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)
