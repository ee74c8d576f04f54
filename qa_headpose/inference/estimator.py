"""`HeadPoseEstimator`: the public inference API. Imports no TensorFlow."""

from __future__ import annotations

import os
import threading

import numpy as np

from qa_headpose.core.angles import HeadPose, from_model_output
from qa_headpose.core.errors import ModelError
from qa_headpose.inference import registry
from qa_headpose.inference.preprocess import to_model_input
from qa_headpose.inference.runtime import TFLiteRunner

MODELS_DIR = registry.MODELS_DIR
DEFAULT_MODEL = registry.shipped_model_path(registry.DEFAULT_MODEL_NAME)


class HeadPoseEstimator:
    """Head pose from face crops with a TFLite model: a shipped one by name, or a path.

    ``HeadPoseEstimator()`` is ``HeadPoseEstimator("accurate")`` (128x128, the most
    accurate); ``HeadPoseEstimator("fast")`` (80x80) takes about half the model time per
    face for about 0.15 degrees more error; any other string or path is a .tflite file.

    Thread safety: one estimator may be shared by any number of threads (a web server's
    pool, say). `predict`, `predict_batch` and `predict_image` return exactly what they
    return when called alone and never fail because of another thread: the model and the
    face detector each lend every concurrent call an interpreter of its own (created on
    first need, at most ``max_concurrency``; further callers wait), and the detector is
    created once even when the first `predict_image` calls race. Throughput grows with
    callers up to ``max_concurrency`` or the CPU count. Each interpreter uses
    ``num_threads`` threads, so ``max_concurrency * num_threads`` should not exceed the
    cores. Processes: an estimator pickles as its settings (the models are loaded anew in
    the other process), so it may be passed to a ``ProcessPoolExecutor`` worker; better
    still, create one per worker in the pool's ``initializer``.

    Args:
        model_path: "accurate" (also None), "fast", or the path of a head-pose .tflite.
        num_threads: interpreter threads.
        require_int8: refuse a model that is not full-int8 (e.g. a float32 export).
        max_concurrency: most calls that run at the same time (interpreters per model);
            None for the number of CPUs this process may use.
        mirror: test-time mirroring: each face and its mirror image go through the model
            together and the pose is their mean (`TFLiteRunner.run`); 0.06-0.08 degrees
            more accurate for the shipped models, at about twice the model's time per face.

    Raises:
        ModelError: if the model is missing, corrupt, not a head-pose TFLite model,
            disagrees with the ``<model>.json`` beside it (input size or dtype), or is not
            full-int8 while ``require_int8`` is set.
        ValueError: if num_threads or max_concurrency < 1.

    Errors of the predict methods: ValueError for arrays that are not what they take
    (`data.DataError` from `predict_image` is a ValueError too); never a silently wrong
    pose: an output at an end of the model's int8 range comes back with
    ``HeadPose.saturated`` set.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        num_threads: int = 2,
        require_int8: bool = False,
        max_concurrency: int | None = None,
        mirror: bool = False,
    ) -> None:
        self.mirror = bool(mirror)
        self.model_path = registry.resolve_model(model_path)
        if not self.model_path.exists():
            if self.model_path.parent == registry.MODELS_DIR:
                raise ModelError(
                    f"The shipped model is missing: {self.model_path}; reinstall qa-headpose or pass a model path"
                )
            if not self.model_path.suffix:
                names = ", ".join(repr(n) for n in registry.MODEL_NAMES)
                raise ModelError(f"No model named {str(model_path)!r}: pass {names} or the path of a .tflite file")
        self.runner = TFLiteRunner(self.model_path, num_threads=num_threads, max_concurrency=max_concurrency)
        self.require_int8 = bool(require_int8)
        if require_int8 and not self.runner.is_fully_int8():
            raise ModelError(
                f"{self.model_path} is not a full-int8 model (input {self.runner.input_dtype.name}, "
                f"output {self.runner.output_dtype.name}); pass an int8 .tflite or require_int8=False"
            )
        self._detector = None
        self._detector_lock = threading.Lock()

    @classmethod
    def from_tflite(cls, path: str | os.PathLike, num_threads: int = 2) -> "HeadPoseEstimator":
        """An estimator on the given .tflite file."""
        return cls(path, num_threads)

    def __reduce__(self) -> tuple:
        # Interpreters and locks do not pickle: rebuild from the settings in the other process.
        state = (self.model_path, self.runner.num_threads, self.require_int8, self.max_concurrency, self.mirror)
        return (_rebuild_estimator, (type(self), state, self._detector))

    @property
    def max_concurrency(self) -> int:
        """Most calls of the model that run at the same time."""
        return self.runner.max_concurrency

    @property
    def input_size(self) -> int:
        """The model's input side, pixels."""
        return self.runner.input_size

    def predict(self, face_crop: np.ndarray) -> HeadPose:
        """Head pose of one face (thread-safe).

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
        """Head poses of several faces in one interpreter call (thread-safe).

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
        degrees, saturated = self.runner.run(x, mirror=self.mirror)
        return [from_model_output(row, flags) for row, flags in zip(degrees, saturated)]

    @property
    def detector(self):
        """The face detector of `predict_image` (`detect.FaceDetector`, created once on first use; thread-safe)."""
        detector = self._detector
        if detector is None:
            with self._detector_lock:
                if self._detector is None:  # another thread may have made it while this one waited
                    from qa_headpose.inference.detect import FaceDetector

                    self._detector = FaceDetector(
                        num_threads=self.runner.num_threads, max_concurrency=self.max_concurrency
                    )
                detector = self._detector
        return detector

    @detector.setter
    def detector(self, value) -> None:
        with self._detector_lock:
            self._detector = value

    def predict_image(self, image: np.ndarray, max_faces: int | None = None) -> list:
        """Finds the faces in a whole image and returns the head pose of each (thread-safe).

        The detector's box is mapped to the landmark-like box the model was trained on
        (`FaceDetector.crop_box`) and cut with the training margin
        (`preprocess.crop_face`); all faces go through the model in one call.

        Args:
            image: BGR image (H, W, 3) uint8; grayscale, BGRA and 16-bit are converted.
            max_faces: keep at most this many faces (best detector score); None keeps all.

        Returns:
            list of `results.FaceResult` (box, score, pose, face index), best score first;
            empty when no face is found (always for an image 1 pixel high or wide).

        Raises:
            ValueError: if ``image`` is not a non-empty image array (`data.DataError`, a
                ValueError, for a float or wrongly shaped one).
        """
        from qa_headpose.inference.images import to_bgr_uint8
        from qa_headpose.inference.preprocess import crop_face
        from qa_headpose.inference.results import FaceResult

        image = to_bgr_uint8(np.asarray(image), "predict_image input")
        detector = self.detector  # one detector for the whole call, even if another thread sets a new one
        detections = detector.detect(image, max_faces)
        if not detections:
            return []
        crops = [crop_face(image, detector.crop_box(d.box), self.input_size) for d in detections]
        poses = self.predict_batch(crops)
        return [FaceResult(d.box, d.score, pose, i) for i, (d, pose) in enumerate(zip(detections, poses))]


def _rebuild_estimator(cls: type, state: tuple, detector) -> HeadPoseEstimator:
    """Unpickles a `HeadPoseEstimator`: a new one with the same settings and detector."""
    model_path, num_threads, require_int8, max_concurrency, mirror = state
    estimator = cls(model_path, num_threads, require_int8, max_concurrency, mirror)
    if detector is not None:
        estimator.detector = detector
    return estimator
