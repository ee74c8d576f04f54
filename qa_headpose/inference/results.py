"""The detector's and the estimator's output types: `Detection` and `FaceResult`. No TF.

MediaPipe's tasks keep result types apart from the engines that make them; so does this
package: `detect.FaceDetector` returns `Detection`s, `HeadPoseEstimator.predict_image`
returns `FaceResult`s, and the video tracker, the ``predict`` command and the server read
them. Boxes are ``(x_min, y_min, x_max, y_max)`` in pixels of the full image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qa_headpose.core.angles import HeadPose


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: (x_min, y_min, x_max, y_max) of the detector's box, pixels.
        score: detector confidence in [0, 1].
        keypoints: float32 (6, 2) x, y pixels in `detect.KEYPOINT_NAMES` order (the subject's
            right eye is on the image left).
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class FaceResult:
    """Head pose of one detected face.

    Attributes:
        box: (x_min, y_min, x_max, y_max) of the detector's box, pixels.
        score: detector confidence in [0, 1].
        pose: `HeadPose` (yaw, pitch, roll) in degrees.
        face: index of the face in its image (by detector score), or its track id in a video.
    """

    box: tuple[float, float, float, float]
    score: float
    pose: HeadPose
    face: int = 0

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the box, pixels."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def size(self) -> float:
        """Mean side of the box, pixels."""
        x0, y0, x1, y1 = self.box
        return ((x1 - x0) + (y1 - y0)) / 2
