"""`HeadPoseEstimator`: the public inference API. Imports no TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qa_headpose.angles import HeadPose, from_model_output
from qa_headpose.preprocess import to_model_input
from qa_headpose.runtime import ModelError, TFLiteRunner

MODELS_DIR = Path(__file__).with_name("models")
DEFAULT_MODEL = MODELS_DIR / "headpose_int8.tflite"


def default_model_path() -> Path:
    """The shipped full-int8 model.

    Raises:
        ModelError: if the package was installed without its model file.
    """
    if not DEFAULT_MODEL.is_file():
        raise ModelError(f"The shipped model is missing: {DEFAULT_MODEL}; reinstall qa-headpose or pass a model path")
    return DEFAULT_MODEL


class HeadPoseEstimator:
    """Head pose from face crops with a TFLite model (the shipped full-int8 one by default).

    Args:
        model_path: a head-pose .tflite; None for the shipped model.
        num_threads: interpreter threads.
        require_int8: refuse a model that is not full-int8 (e.g. a float32 export).

    Raises:
        ModelError: if the model is missing, corrupt, not a head-pose TFLite model,
            disagrees with the ``<model>.json`` beside it (input size or dtype), or is not
            full-int8 while ``require_int8`` is set.
        ValueError: if num_threads < 1.

    Errors of the predict methods: ValueError for arrays that are not what they take
    (`data.DataError` from `predict_image` is a ValueError too); never a silently wrong pose.
    """

    def __init__(
        self, model_path: str | os.PathLike | None = None, num_threads: int = 2, require_int8: bool = False
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.runner = TFLiteRunner(self.model_path, num_threads=num_threads)
        if require_int8 and not self.runner.is_fully_int8():
            raise ModelError(
                f"{self.model_path} is not a full-int8 model (input {self.runner.input_dtype.name}, "
                f"output {self.runner.output_dtype.name}); pass an int8 .tflite or require_int8=False"
            )

    @classmethod
    def from_tflite(cls, path: str | os.PathLike, num_threads: int = 2) -> "HeadPoseEstimator":
        """An estimator on the given .tflite file."""
        return cls(path, num_threads)

    @property
    def input_size(self) -> int:
        """The model's input side, pixels."""
        return self.runner.input_size

    def predict(self, face_crop: np.ndarray) -> HeadPose:
        """Head pose of one face.

        Args:
            face_crop: uint8 BGR (H, W, 3), the face box enlarged by 0.6 of its
                width/height per side (any size; resized inside).

        Returns:
            `HeadPose` (yaw, pitch, roll) in degrees.

        Raises:
            ValueError: if the crop is not a uint8 (H, W, 3) array of pixels 0-255 (a float
                crop in [0, 1] is refused, not rescaled).
        """
        face_crop = np.asarray(face_crop)
        if face_crop.ndim != 3:
            raise ValueError(f"predict takes one uint8 (H, W, 3) crop. Received: shape={face_crop.shape}")
        return self.predict_batch([face_crop])[0]

    def predict_batch(self, face_crops: list[np.ndarray] | np.ndarray) -> list[HeadPose]:
        """Head poses of several faces in one interpreter call.

        Args:
            face_crops: a list of uint8 BGR (H, W, 3) crops (sizes may differ), or a
                uint8 array (n, H, W, 3).

        Returns:
            One `HeadPose` per crop, in order.

        Raises:
            ValueError: for an empty batch, something that is not a sequence of crops, or a
                crop that is not uint8 (H, W, 3) (float crops in [0, 1] included).
        """
        if isinstance(face_crops, np.ndarray) and face_crops.ndim != 4:
            raise ValueError(f"predict_batch takes (n, H, W, 3) or a list of crops. Received: shape={face_crops.shape}")
        try:
            face_crops = list(face_crops)
        except TypeError:
            raise ValueError(
                f"predict_batch takes (n, H, W, 3) or a list of crops. Received: {type(face_crops).__name__}"
            ) from None
        x = to_model_input(face_crops, self.input_size)
        return [from_model_output(row) for row in self.runner(x)]

    @property
    def detector(self):
        """The face detector of `predict_image` (`detect.FaceDetector`, created on first use)."""
        if getattr(self, "_detector", None) is None:
            from qa_headpose.detect import FaceDetector

            self._detector = FaceDetector(num_threads=self.runner.num_threads)
        return self._detector

    @detector.setter
    def detector(self, value) -> None:
        self._detector = value

    def predict_image(self, image: np.ndarray, max_faces: int | None = None) -> list:
        """Finds the faces in a whole image and returns the head pose of each.

        The detector's box is mapped to the landmark-like box the model was trained on
        (`FaceDetector.crop_box`) and cut with the training margin
        (`preprocess.crop_face`); all faces go through the model in one call.

        Args:
            image: BGR image (H, W, 3) uint8; grayscale, BGRA and 16-bit are converted.
            max_faces: keep at most this many faces (best detector score); None keeps all.

        Returns:
            list of `detect.FaceResult` (box, score, pose, face index), best score first;
            empty when no face is found (always for an image 1 pixel high or wide).

        Raises:
            ValueError: if ``image`` is not a non-empty image array (`data.DataError`, a
                ValueError, for a float or wrongly shaped one).
        """
        from qa_headpose.data import to_bgr_uint8
        from qa_headpose.detect import FaceResult
        from qa_headpose.preprocess import crop_face

        image = to_bgr_uint8(np.asarray(image), "predict_image input")
        detections = self.detector.detect(image, max_faces)
        if not detections:
            return []
        crops = [crop_face(image, self.detector.crop_box(d.box), self.input_size) for d in detections]
        poses = self.predict_batch(crops)
        return [FaceResult(d.box, d.score, pose, i) for i, (d, pose) in enumerate(zip(detections, poses))]
