"""Whole frames through `HeadPoseEstimator.predict_image` (what users run), alone and from several threads.

`measure_frame` times ``predict_image`` on a frame with one face, and each of its
stages on its own with the estimator's own parts (its detector, `preprocess`, its
runner). `measure_callers` measures faces/s with N threads sharing one estimator
(thread-safe, a pool of interpreters) and checks that every call returns what a call
alone returns. A frame in which the detector finds no face is an error: timing a
frame without its detection would measure something else.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qa_headpose.bench.timing import percentiles, time_calls
from qa_headpose.inference import registry

ASSET = registry.SAMPLE_IMAGE


def default_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """A uint8 BGR frame with one face: ``assets/astronaut.jpg`` resized to ``height`` and centred.

    Raises:
        FileNotFoundError: if the packaged image is missing.
    """
    import cv2

    image = cv2.imread(str(ASSET)) if ASSET.is_file() else None
    if image is None:
        raise FileNotFoundError(f"The frame's face image is missing: {ASSET}")
    side = min(width, height)
    face = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    frame = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - side) // 2, (height - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = face
    return frame


def _one_face(estimator: Any, frame: np.ndarray) -> Any:
    faces = estimator.predict_image(frame, max_faces=1)
    if not faces:
        h, w = frame.shape[:2]
        raise ValueError(f"No face detected in the {w}x{h} frame; the whole-frame timing needs a frame with a face")
    return faces[0]


def measure_frame(
    model_path: str | os.PathLike,
    num_threads: int = 2,
    runs: int = 100,
    warmup: int = 5,
    frame: np.ndarray | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Time of one BGR frame with one face through `HeadPoseEstimator.predict_image`, and of its stages.

    Args:
        model_path: the head-pose .tflite.
        num_threads: threads of the pose interpreter and of the detector.
        runs, warmup: timed and untimed frames.
        frame: uint8 BGR image with one face; None: `default_frame` (640x480).
        max_seconds: stop each timing after this long (at least 10 calls); None: all ``runs``.

    Returns:
        ``total_p50_ms``/``total_p90_ms`` of ``predict_image(frame, max_faces=1)``; the same
        for its stages timed alone: ``detect`` (the estimator's detector),
        ``crop_preprocess`` (`preprocess.crop_face` + `to_model_input`) and ``pose`` (the
        estimator's runner on the prepared input); the frame size, the detector, the face
        found (box, score, pose in degrees).

    Raises:
        ValueError: if no face is detected in the frame.
    """
    from qa_headpose.inference.estimator import HeadPoseEstimator
    from qa_headpose.inference.preprocess import crop_face, to_model_input

    estimator = HeadPoseEstimator(model_path, num_threads=num_threads, max_concurrency=1)
    frame = default_frame() if frame is None else frame
    h, w = frame.shape[:2]
    face = _one_face(estimator, frame)
    detector, size = estimator.detector, estimator.input_size
    box = detector.crop_box(face.box)
    x = to_model_input(crop_face(frame, box, size), size)
    timings = {
        "total": lambda: estimator.predict_image(frame, max_faces=1),
        "detect": lambda: detector.detect(frame, 1),
        "crop_preprocess": lambda: to_model_input(crop_face(frame, box, size), size),
        "pose": lambda: estimator.runner.run(x),
    }
    out: dict[str, Any] = {
        "frame": f"{w}x{h}",
        "threads": int(num_threads),
        "detector": f"BlazeFace ({Path(detector.model_path).name}) + box mapping",
        "faces": 1,
        "face_box": [round(float(v), 1) for v in face.box],
        "face_score": round(float(face.score), 3),
        "face_pose_deg": [round(float(v), 2) for v in (face.pose.yaw, face.pose.pitch, face.pose.roll)],
    }
    for name, call in timings.items():
        ms = time_calls(call, warmup, runs, max_seconds)
        out.update(percentiles(ms, name))
        out[f"{name}_runs"] = int(len(ms))
    out["runs"] = out["total_runs"]
    return out


def measure_callers(
    model_path: str | os.PathLike,
    callers: Sequence[int] = (1, 2, 4, 8),
    num_threads: int = 1,
    seconds: float = 1.0,
    frame: np.ndarray | None = None,
    max_concurrency: int | None = None,
) -> dict[str, Any]:
    """Faces/s with N caller threads sharing ONE `HeadPoseEstimator`, for each N in ``callers``.

    Each caller calls ``predict_image(frame, max_faces=1)`` (detection + pose) for
    ``seconds``, then ``predict(crop)`` (pose only) for as long, all starting together
    after two untimed calls each (the pool creates interpreters on first need). Every
    result is compared with the pose of a call made alone.

    Args:
        model_path: the head-pose .tflite.
        callers: caller thread counts.
        num_threads: threads of each interpreter.
        seconds: timed seconds per (N, call).
        frame: uint8 BGR image with one face; None: `default_frame`.
        max_concurrency: the estimator's interpreters per model; None: its default (the CPUs).

    Returns:
        {"model", "num_threads", "max_concurrency", "cpus", "rows": [{"callers",
        "image_faces_per_s", "crop_faces_per_s", "calls", "max_diff_deg"}]}; ``max_diff_deg`` is
        the largest difference from the lone call's pose (0 when the estimator is thread-safe).

    Raises:
        ValueError: if no face is detected in the frame, or ``callers`` holds a value < 1.
    """
    from qa_headpose.inference.estimator import HeadPoseEstimator
    from qa_headpose.inference.preprocess import crop_face
    from qa_headpose.inference.runtime import default_max_concurrency

    if not callers or min(callers) < 1:
        raise ValueError(f"callers must be positive integers. Received: callers={tuple(callers)}")
    estimator = HeadPoseEstimator(model_path, num_threads=num_threads, max_concurrency=max_concurrency)
    frame = default_frame() if frame is None else frame
    face = _one_face(estimator, frame)
    crop = crop_face(frame, estimator.detector.crop_box(face.box), estimator.input_size)
    reference = {"image": _pose(face.pose), "crop": _pose(estimator.predict(crop))}
    calls = {
        "image": lambda: _pose(_one_face(estimator, frame).pose),
        "crop": lambda: _pose(estimator.predict(crop)),
    }
    rows = []
    for n in callers:
        row: dict[str, Any] = {"callers": int(n), "calls": 0, "max_diff_deg": 0.0}
        for kind, call in calls.items():
            count, elapsed, diff = _hammer(call, reference[kind], int(n), seconds)
            row[f"{kind}_faces_per_s"] = round(count / elapsed, 1)
            row["calls"] += count
            row["max_diff_deg"] = max(row["max_diff_deg"], round(diff, 4))
        rows.append(row)
    return {
        "model": str(model_path),
        "num_threads": int(num_threads),
        "max_concurrency": estimator.max_concurrency,
        "cpus": default_max_concurrency(),
        "seconds": float(seconds),
        "rows": rows,
    }


def _pose(pose: Any) -> np.ndarray:
    return np.array([pose.yaw, pose.pitch, pose.roll], np.float64)


def _hammer(call: Any, reference: np.ndarray, n: int, seconds: float) -> tuple[int, float, float]:
    """(calls finished by ``n`` threads in about ``seconds``, their wall seconds, largest deviation from ``reference``)."""
    lock = threading.Lock()
    state: dict[str, Any] = {"count": 0, "diff": 0.0, "error": None, "start": 0.0, "end": 0.0}

    def release() -> None:  # run by one thread when all are ready, before any is released
        state["start"] = time.perf_counter()

    barrier = threading.Barrier(n, action=release)

    def worker() -> None:
        try:
            for _ in range(2):
                call()
            barrier.wait()
            deadline = state["start"] + seconds
            count, diff = 0, 0.0
            while time.perf_counter() < deadline:
                diff = max(diff, float(np.max(np.abs(call() - reference))))
                count += 1
            end = time.perf_counter()
            with lock:
                state["count"] += count
                state["diff"] = max(state["diff"], diff)
                state["end"] = max(state["end"], end)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # raised again in the calling thread
            with lock:
                state["error"] = exc
            barrier.abort()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"] is not None:
        raise state["error"]
    return int(state["count"]), float(state["end"] - state["start"]), float(state["diff"])
