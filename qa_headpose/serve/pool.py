"""The workers of ``qa-headpose serve``: threads that each own one `HeadPoseEstimator`, and the work they do.

Decoding happens here, off the event loop (OpenCV releases the GIL while it decodes), at most
``3 * max_pixels`` bytes per image whatever its depth or channels (`images.decode_image`).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from qa_headpose.core.errors import DataError
from qa_headpose.inference.estimator import HeadPoseEstimator
from qa_headpose.inference.images import decode_image
from qa_headpose.serve.errors import ApiError
from qa_headpose.serve.schema import face_to_json


class EstimatorPool:
    """A fixed set of worker threads, each calling its own `HeadPoseEstimator`.

    Args:
        make_estimator: builds one estimator; called ``workers`` times here, so a bad model fails now.
        workers: number of threads (and estimators).
    """

    def __init__(self, make_estimator: Callable[[], HeadPoseEstimator], workers: int) -> None:
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self.estimators = [make_estimator() for _ in range(workers)]
        for estimator in self.estimators:
            estimator.predict_image(np.zeros((64, 64, 3), np.uint8))  # loads the detector, allocates tensors
            self._idle.put(estimator)
        self._local = threading.local()
        self.workers = workers
        # The executor starts at most `workers` threads; each takes one estimator for its lifetime.
        self._executor = ThreadPoolExecutor(workers, "qa-headpose-serve", initializer=self._take_estimator)

    def _take_estimator(self) -> None:
        self._local.estimator = self._idle.get_nowait()

    def _call(self, fn: Callable[..., Any], args: tuple) -> Any:
        return fn(self._local.estimator, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Runs ``fn(estimator, *args)`` on a worker; returns its `Future`."""
        return self._executor.submit(self._call, fn, args)

    def shutdown(self) -> None:
        """Stops the workers once their current calls end; queued calls are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def predict_payload(estimator: HeadPoseEstimator, payload: bytes, max_pixels: int, submitted: float) -> dict[str, Any]:
    """Worker side of ``POST /v1/poses``: decode (EXIF orientation applied) and predict, with the timings.

    Returns:
        The answer's ``faces`` and ``image`` and the ``queue_ms``, ``decode_ms``, ``inference_ms`` timings, or
        ``{"error": ApiError}`` for an image that cannot be decoded.
    """
    start = time.perf_counter()
    try:
        image = decode_image(payload, "the request body", max_pixels)
    except DataError as exc:
        code = "image_too_large" if str(exc).startswith("Image too large") else "bad_image"
        return {"error": ApiError(code, str(exc))}
    decoded = time.perf_counter()
    faces = estimator.predict_image(image)
    done = time.perf_counter()
    return {
        "faces": [face_to_json(f) for f in faces],
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "queue_ms": (start - submitted) * 1e3,
        "decode_ms": (decoded - start) * 1e3,
        "inference_ms": (done - decoded) * 1e3,
    }
