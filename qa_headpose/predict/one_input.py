"""One input of ``predict``, start to end: an image or a video (or the webcam) -> rows, a report, a drawn copy.

`run_source` reads the input, finds its faces with `HeadPoseEstimator.predict_image`,
tracks and optionally smooths them in a video (`video.FaceTracker`), draws them into the
annotated copy (and a window with ``show``), and returns one row per face
(`formats.make_row`) with the input's `SourceReport`. A bad input gives no rows and a
report with a one-line error; it never raises for the input's own fault. No TF.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from qa_headpose.core.atomic import write_bytes
from qa_headpose.core.errors import DataError
from qa_headpose.core.native_stderr import native_stderr_silenced
from qa_headpose.inference import images
from qa_headpose.inference.detect import FaceResult
from qa_headpose.inference.draw import draw_face, draw_text
from qa_headpose.inference.images import read_image
from qa_headpose.inference.video import FaceTracker, VideoSink, frame_count, iter_frames, open_camera, open_video
from qa_headpose.inference.video import video_fps as _video_fps
from qa_headpose.predict.config import PredictConfig
from qa_headpose.predict.formats import make_row
from qa_headpose.predict.sources import Source, SourceReport

logger = logging.getLogger(__name__)


def make_estimator(cfg: PredictConfig):
    """The `HeadPoseEstimator` of a run, with its detector set to the run's threads and min_score.

    Raises:
        ModelError: if the head-pose or detector model is missing or invalid.
    """
    from qa_headpose.inference.detect import FaceDetector
    from qa_headpose.inference.estimator import HeadPoseEstimator

    with native_stderr_silenced():
        estimator = HeadPoseEstimator(cfg.model, num_threads=cfg.threads, mirror=cfg.mirror)
        estimator.detector = FaceDetector(cfg.detector, num_threads=cfg.threads, min_score=cfg.min_score)
    return estimator


def decode_image(path: Path, payload: bytes | None = None) -> np.ndarray:
    """`images.read_image` of ``path`` (or `images.decode_image` of its bytes ``payload``, read elsewhere,
    e.g. from Parquet) with native warnings silenced and OpenCV's errors as one-line `DataError`s."""
    try:
        with native_stderr_silenced():  # libpng/libjpeg print their own complaints
            return read_image(path) if payload is None else images.decode_image(payload, str(path))
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise DataError(f"Image too large: {path} (OpenCV decodes at most 2**30 pixels)") from None
        raise DataError(f"Cannot decode image: {path} ({one_line(exc)})") from None
    except MemoryError:
        raise DataError(f"Image too large to decode: {path}") from None


def one_line(exc: BaseException) -> str:
    """An exception as the one line a report shows."""
    text = str(exc).strip()
    if isinstance(exc, cv2.error):
        text = text.splitlines()[-1].strip() if text else "OpenCV error"
    return text.splitlines()[0] if text else type(exc).__name__


# What a bad input may raise; anything else is a bug and propagates.
INPUT_ERRORS = (DataError, ValueError, OSError, cv2.error)


def run_source(
    estimator,
    src: Source,
    out: Path | None,
    cfg: PredictConfig,
    on_row: Callable[[dict[str, Any]], None],
    on_frame: Callable[[int, int | None], None] | None = None,
) -> tuple[list[dict[str, Any]], SourceReport]:
    """One input's rows and report; a bad input gives no rows and a report with its error.

    Args:
        estimator: the `HeadPoseEstimator` (see `make_estimator`).
        src: the input.
        out: where its annotated copy goes, or None.
        cfg: the run's `PredictConfig` (max_faces, draw, smooth, max_frames, show).
        on_row: called with each face's row as it is found.
        on_frame: for a video, called with (frames done, frames or None) after each frame.

    Returns:
        (rows, report).
    """
    report = SourceReport(src.name, src.kind)
    start = time.perf_counter()
    try:
        if src.kind == "image":
            new = _run_image(estimator, src, out, cfg, report)
            for row in new:
                on_row(row)
            report.seconds = time.perf_counter() - start
        else:
            new = _run_video(estimator, src, out, cfg, report, on_row, on_frame or (lambda n, t: None))
    except INPUT_ERRORS as exc:
        report.error = one_line(exc)
        logger.debug("input %s failed", src.name, exc_info=True)
        new = []
    return new, report


def _write_image(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(path.suffix.lower(), image)
    if not ok:
        raise DataError(f"OpenCV cannot write {path}")
    write_bytes(path, buffer.tobytes())


def _draw_results(image: np.ndarray, results: list[FaceResult], mode: str, video: bool) -> None:
    for r in results:
        label = f"#{r.face} yaw {r.pose.yaw:.0f} pitch {r.pose.pitch:.0f} roll {r.pose.roll:.0f}" if video else None
        draw_face(image, r.box, r.pose, mode, label)


def _run_image(estimator, src: Source, out: Path | None, cfg: PredictConfig, report: SourceReport) -> list[dict]:
    image = decode_image(src.path)
    results = estimator.predict_image(image, cfg.max_faces)
    report.frames, report.faces, report.frames_with_face = 1, len(results), int(bool(results))
    if out is not None:
        canvas = image.copy()
        _draw_results(canvas, results, cfg.draw, video=False)
        _write_image(canvas, out)
        report.output = out
    return [make_row(src.name, 0, r) for r in results]


def _run_video(
    estimator, src: Source, out: Path | None, cfg: PredictConfig, report: SourceReport, on_row: Callable, on_frame
) -> list[dict]:
    with native_stderr_silenced():  # OpenCV/FFmpeg warnings; the DataError says it in one line
        capture = open_camera(src.camera) if src.kind == "camera" else open_video(src.path)
    fps = _video_fps(capture)
    total = frame_count(capture, cfg.max_frames)
    tracker = FaceTracker(cfg.smooth)
    sink = VideoSink(out, fps) if out is not None else None
    window = f"qa-headpose {src.name}"
    rows: list[dict] = []
    start = time.perf_counter()
    try:
        if cfg.show:
            _open_window(window)
        for index, frame in iter_frames(capture, cfg.max_frames):
            t = index / fps if src.kind == "video" else time.perf_counter() - start
            results = tracker.update(estimator.predict_image(frame, cfg.max_faces), t)
            report.frames += 1
            report.faces += len(results)
            report.frames_with_face += int(bool(results))
            for r in results:
                row = make_row(src.name, index, r)
                rows.append(row)
                on_row(row)
            on_frame(report.frames, total)
            if sink is not None or cfg.show:
                _draw_results(frame, results, cfg.draw, video=True)
                elapsed = time.perf_counter() - start
                draw_text(frame, f"FPS {report.frames / max(elapsed, 1e-6):.1f}", (8, 24), 0.7)
                if sink is not None:
                    sink.write(frame)
                if cfg.show and _show(window, frame):
                    break
    except KeyboardInterrupt:
        if src.kind != "camera":
            if sink is not None:
                sink.abort()
            raise
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        capture.release()
        report.seconds = time.perf_counter() - start
    if report.frames == 0:
        if sink is not None:
            sink.abort()
        raise DataError(f"No frame could be read from {src.name}")
    if sink is not None:
        sink.close()
        report.output = out
    return rows


def _open_window(name: str) -> None:
    try:
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise DataError("--show needs an OpenCV built with a GUI (this one has none); use --output instead") from None


def _show(name: str, frame: np.ndarray) -> bool:
    """Shows a frame; True when the user pressed q or Esc."""
    cv2.imshow(name, frame)
    return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)
