"""qa_headpose: head pose (yaw, pitch, roll in degrees) from a face crop with a full-int8 MobileNetV2.

Data flow: uint8 BGR face crop (H, W, 3) -> `preprocess.to_model_input` -> float32
(1, S, S, 3) BGR pixels in [0, 255] -> Keras model or `TFLiteRunner` (int8) -> float32
(1, 3) degrees -> `HeadPose(yaw, pitch, roll)`.

Importing this package does not import TensorFlow; only training and export do.
"""

from __future__ import annotations

from qa_headpose.core.angles import ANGLE_ORDER, HeadPose
from qa_headpose.inference.results import FaceResult

__version__ = "0.1.0"

__all__ = ["ANGLE_ORDER", "FaceResult", "HeadPose", "HeadPoseEstimator", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import qa_headpose` stays light until the estimator is needed.
    if name == "HeadPoseEstimator":
        from qa_headpose.inference.estimator import HeadPoseEstimator

        return HeadPoseEstimator
    raise AttributeError(f"module 'qa_headpose' has no attribute {name!r}")
