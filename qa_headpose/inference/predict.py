"""The work of ``qa-headpose predict``: images, folders, videos or a webcam -> faces with head poses. No TF.

`run_predict` finds the faces of every input (`HeadPoseEstimator.predict_image`:
detector, crop, one batched model call per image or frame), tracks and optionally
smooths them in videos (`video.FaceTracker`), draws them (`draw.draw_face`) into
annotated copies, and hands each face to a callback as a row of `COLUMNS`. It never
prints: ``cli/predict.py`` turns rows into the terminal table, JSON and CSV with the
formatters here. A bad input is reported and skipped; the run goes on.

With ``jobs > 1`` the inputs are spread over that many worker processes (each with
its own estimator; decoding, detection, pose and the annotated copy all happen in the
worker); rows and reports still come back in input order, the same as with one job,
and at most a few inputs per worker are in flight, so memory stays flat however many
inputs there are. A video is one input: its frames stay in one process, in order.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import os
import pickle
import signal
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from qa_headpose.core.atomic import write_bytes
from qa_headpose.core.errors import DataError
from qa_headpose.inference.detect import MIN_SCORE, FaceResult
from qa_headpose.inference.draw import draw_face, draw_text
from qa_headpose.inference.images import read_image
from qa_headpose.inference.sources import (
    Source,
    SourceReport,
    collect_sources,
    plan_outputs,
)
from qa_headpose.inference.video import (
    FaceTracker,
    SmoothConfig,
    VideoSink,
    frame_count,
    iter_frames,
    open_camera,
    open_video,
)
from qa_headpose.inference.video import video_fps as _video_fps

logger = logging.getLogger(__name__)

COLUMNS = ("file", "frame", "face", "x0", "y0", "x1", "y1", "score", "yaw", "pitch", "roll", "saturated")
DRAW_MODES = ("axes", "cube", "both")
# Exit statuses of a run (the CLI returns them): everything read and at least one face;
# some inputs failed or no face at all; nothing could be read.
STATUS_OK, STATUS_PARTIAL, STATUS_FAILED = 0, 1, 2
# Inputs in flight per worker process with --jobs: enough to keep each busy, few enough for flat memory.
IN_FLIGHT_PER_JOB = 4


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """What ``qa-headpose predict`` does.

    Fields:
        inputs: image files, folders of images and video files; empty (and no camera)
            runs on the shipped sample image.
        camera: webcam index instead of inputs, or None.
        model, mirror: `HeadPoseEstimator`'s model (None: the shipped one) and test-time mirroring.
        detector: shipped face detector ("short", "full") or a BlazeFace .tflite.
        threads: interpreter threads (detector and head-pose model).
        max_faces: at most this many faces per image or frame (best detector score); None for all.
        min_score: lowest detector confidence kept, in (0, 1).
        draw: what `output` shows at each face: "axes", "cube" or "both".
        output: folder, or one image/video file, for annotated copies; None writes none.
        smooth: One-Euro smoothing of video poses and boxes (`video.SmoothConfig`), or None.
        max_frames: stop each video or the webcam after this many frames; None for all.
        show: show video/webcam frames in a window (needs an OpenCV built with a GUI).
        force: overwrite existing output files.
        jobs: worker processes over which the inputs are spread (each uses ``threads``
            interpreter threads); 1 runs everything in this process, as does a camera or
            ``show``.
    """

    inputs: tuple[str, ...] = ()
    camera: int | None = None
    model: str | None = None
    mirror: bool = False
    detector: str = "short"
    threads: int = 2
    max_faces: int | None = None
    min_score: float = MIN_SCORE
    draw: str = "axes"
    output: str | None = None
    smooth: SmoothConfig | None = None
    max_frames: int | None = None
    show: bool = False
    force: bool = False
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.draw not in DRAW_MODES:
            raise ValueError(f"draw must be one of {DRAW_MODES}. Received: draw={self.draw!r}")
        if self.camera is not None and self.inputs:
            raise ValueError("Give either input paths or a camera, not both")
        if self.camera is not None and not 0 <= self.camera < 2**31:
            raise ValueError(f"camera must be an index 0, 1, ... Received: camera={self.camera}")
        for name in ("threads", "max_faces", "max_frames", "jobs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={value}")


@dataclasses.dataclass
class PredictSummary:
    """The result of `run_predict`: one row per face (`COLUMNS`) and one report per input."""

    rows: list[dict[str, Any]]
    sources: list[SourceReport]

    @property
    def failed(self) -> list[SourceReport]:
        """The inputs that could not be processed."""
        return [s for s in self.sources if s.error]

    @property
    def status(self) -> int:
        """`STATUS_OK`, `STATUS_PARTIAL` (some inputs failed, or no face anywhere) or `STATUS_FAILED`."""
        if not self.sources or len(self.failed) == len(self.sources):
            return STATUS_FAILED
        if self.failed or not self.rows:
            return STATUS_PARTIAL
        return STATUS_OK


def make_row(name: str, frame: int, result: FaceResult) -> dict[str, Any]:
    """One face as a row of `COLUMNS` (box in pixels, score, angles in degrees, `HeadPose.saturated`)."""
    x0, y0, x1, y1 = result.box
    return {
        "file": name,
        "frame": int(frame),
        "face": int(result.face),
        "x0": round(float(x0), 2),
        "y0": round(float(y0), 2),
        "x1": round(float(x1), 2),
        "y1": round(float(y1), 2),
        "score": round(float(result.score), 4),
        "yaw": round(float(result.pose.yaw), 3),
        "pitch": round(float(result.pose.pitch), 3),
        "roll": round(float(result.pose.roll), 3),
        "saturated": bool(getattr(result.pose, "saturated", False)),
    }


def _read_image(path: Path) -> np.ndarray:
    try:
        with _native_stderr_silenced():  # libpng/libjpeg print their own complaints
            return read_image(path)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise DataError(f"Image too large: {path} (OpenCV decodes at most 2**30 pixels)") from None
        raise DataError(f"Cannot decode image: {path} ({_one_line(exc)})") from None
    except MemoryError:
        raise DataError(f"Image too large to decode: {path}") from None


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
    image = _read_image(src.path)
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
    with _native_stderr_silenced():  # OpenCV/FFmpeg warnings; the DataError says it in one line
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


def make_estimator(cfg: PredictConfig):
    """The `HeadPoseEstimator` of a run, with its detector set to the run's threads and min_score.

    Raises:
        ModelError: if the head-pose or detector model is missing or invalid.
    """
    from qa_headpose.inference.detect import FaceDetector
    from qa_headpose.inference.estimator import HeadPoseEstimator

    with _native_stderr_silenced():
        estimator = HeadPoseEstimator(cfg.model, num_threads=cfg.threads, mirror=cfg.mirror)
        estimator.detector = FaceDetector(cfg.detector, num_threads=cfg.threads, min_score=cfg.min_score)
    return estimator


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hides what native code prints on stderr (LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate",
    OpenCV, FFmpeg and libpng warnings); Python exceptions still carry the error."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def run_predict(
    cfg: PredictConfig,
    estimator=None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_source: Callable[[SourceReport], None] | None = None,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> PredictSummary:
    """Runs head-pose prediction over all inputs of ``cfg``.

    Args:
        cfg: the run's `PredictConfig`.
        estimator: a `HeadPoseEstimator` to use; None builds one with `make_estimator`.
            With ``cfg.jobs > 1`` each worker process gets a copy (it pickles as its settings).
        on_row: called with each face's row as soon as it is found (with jobs > 1, in input
            order as each input's result comes back).
        on_source: called with each input's `SourceReport` when it is done (or failed).
        on_progress: called with ("inputs", inputs done, inputs) as inputs finish and, for
            the videos run in this process (jobs 1), with ("frames NAME", frames done, frames
            or None when unknown) after each frame.

    Returns:
        `PredictSummary` with all rows and reports; bad inputs are reported, not raised.

    Raises:
        ModelError: if a model is missing or invalid.
        FileExistsError, ValueError, NotADirectoryError: for outputs that cannot be planned
            (see `plan_outputs`); checked before any work.
        RuntimeError: if ``cfg.jobs > 1`` and the worker processes cannot start: they are
            spawned, so a script calling this with jobs > 1 must guard its entry point
            with ``if __name__ == "__main__":``.
    """
    on_row = on_row or _ignore
    on_source = on_source or _ignore
    progress = on_progress or (lambda stage, done, total: None)
    sources, reports = collect_sources(cfg.inputs, cfg.camera)
    total = len(sources) + len(reports)
    for report in reports:
        on_source(report)
    progress("inputs", len(reports), total)
    plan = plan_outputs(sources, cfg.output, cfg.force)
    rows: list[dict[str, Any]] = []
    if sources and estimator is None:
        estimator = make_estimator(cfg)  # in this process too, so a bad model fails here, once
    jobs = min(cfg.jobs, len(sources))
    if jobs > 1 and cfg.camera is None and not cfg.show:
        done = _run_parallel(estimator, sources, plan, cfg, jobs)
    else:
        done = (
            _run_source(
                estimator, src, plan.get(i), cfg, on_row, lambda n, t, s=src: progress(f"frames {s.name}", n, t)
            )
            for i, src in enumerate(sources)
        )
        jobs = 1
    try:
        for new, report in done:
            if jobs > 1:  # in-process runs call on_row as each face is found
                new = [{key: row[key] for key in COLUMNS} for row in new]  # one copy of each key, not one per row
                for row in new:
                    on_row(row)
            rows += new
            reports.append(report)
            on_source(report)
            progress("inputs", len(reports), total)
    finally:
        done.close()  # now, not at garbage collection: if a callback raised (Ctrl-C), the workers stop here
    return PredictSummary(rows, reports)


def _ignore(_: Any) -> None:
    return None


def _run_source(
    estimator, src: Source, out: Path | None, cfg: PredictConfig, on_row: Callable, on_frame: Callable | None = None
) -> tuple[list[dict[str, Any]], SourceReport]:
    """One input's rows and report; a bad input gives no rows and a report with its error."""
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
    except (DataError, ValueError, OSError, cv2.error) as exc:
        report.error = _one_line(exc)
        logger.debug("input %s failed", src.name, exc_info=True)
        new = []
    return new, report


# The estimator and config of a --jobs worker process, set once by `_init_worker`.
_WORKER: dict[str, Any] = {}


def _init_worker(estimator_pickle: bytes, cfg: PredictConfig) -> None:
    """Builds the worker's own estimator (loading its models); Ctrl-C is the parent's to handle."""
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    with _native_stderr_silenced():
        _WORKER["estimator"] = pickle.loads(estimator_pickle)
    _WORKER["cfg"] = cfg


def _watch_parent(parent: int) -> None:
    # A worker whose parent was killed would otherwise wait for work forever.
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigterm(signum: int, frame: Any) -> None:
    # The parent stops the run: an input in progress unwinds (its partial output file is
    # removed on the way); an idle worker just ends.
    if _WORKER.get("busy"):
        _WORKER["stopping"] = True
        raise KeyboardInterrupt
    os._exit(0)


def _work(src: Source, out: Path | None) -> tuple[list[dict[str, Any]], SourceReport]:
    _WORKER["busy"] = True
    try:
        return _run_source(_WORKER["estimator"], src, out, _WORKER["cfg"], _ignore)
    finally:
        _WORKER["busy"] = False
        if _WORKER.get("stopping"):  # unwound and cleaned up; nobody waits for the result
            os._exit(0)


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    """Ends a pool now (after Ctrl-C or an error here), and returns once every worker is reaped.

    The pool's manager thread reaps the workers, so this waits for it rather than joining them too
    (two threads waiting on one child race; the loser sees a dead worker as alive). The pool's own
    dict of workers, not a copy: a worker started while the pool shuts down is ended too.
    """
    workers = getattr(executor, "_processes", None) or {}
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    for process in list(workers.values()):
        if process.is_alive():
            process.terminate()
    if manager is not None:
        manager.join(timeout=10)
    for process in list(workers.values()):
        if process.exitcode is None:  # still running after 10 s (stuck in native code): no more waiting
            process.kill()
            process.join()
    if manager is not None:
        manager.join()


def _ready() -> bool:
    return "estimator" in _WORKER


def _start_pool(jobs: int, context: Any, payload: bytes, cfg: PredictConfig) -> ProcessPoolExecutor:
    """A process pool whose workers have started and built their estimators.

    Raises:
        RuntimeError: if the workers cannot start, e.g. when the program that calls
            `run_predict` does not guard its entry point with ``if __name__ == "__main__":``
            (each spawned worker imports the main module).
    """
    executor = ProcessPoolExecutor(jobs, context, initializer=_init_worker, initargs=(payload, cfg))
    try:
        executor.submit(_ready).result()
    except BrokenProcessPool:
        executor.shutdown(wait=True, cancel_futures=True)
        raise RuntimeError(
            "The worker processes of jobs > 1 could not start; a script that calls run_predict with jobs > 1 "
            'must guard its entry point with `if __name__ == "__main__":`'
        ) from None
    return executor


def _run_parallel(
    estimator, sources: list[Source], plan: dict[int, Path], cfg: PredictConfig, jobs: int
) -> Iterator[tuple[list[dict[str, Any]], SourceReport]]:
    """`_run_source` of every input in ``jobs`` worker processes; yields in input order.

    At most `IN_FLIGHT_PER_JOB` * jobs inputs are submitted and not yet yielded. If a
    worker dies (a crash in native code, the OOM killer), the inputs in flight are run
    again one at a time in a fresh pool, so only the input that kills a worker on its
    own is reported as failed.

    Raises:
        RuntimeError: if the worker processes cannot start (`_start_pool`).
    """
    import multiprocessing

    # spawn: a worker inherits no threads, locks or interpreters of this process.
    context = multiprocessing.get_context("spawn")
    payload = pickle.dumps(estimator)
    window = IN_FLIGHT_PER_JOB * jobs
    queue = deque(range(len(sources)))  # not submitted yet
    pending: deque[tuple[int, Future]] = deque()  # submitted, in input order
    suspects: set[int] = set()  # in flight when a worker died: each now runs alone
    executor: ProcessPoolExecutor | None = None
    try:
        while queue or pending:
            if executor is None:
                executor = _start_pool(jobs, context, payload, cfg)
            while queue and len(pending) < window:
                alone = queue[0] in suspects or (pending and pending[-1][0] in suspects)
                if alone and pending:
                    break
                i = queue.popleft()
                pending.append((i, executor.submit(_work, sources[i], plan.get(i))))
                if alone:
                    break
            i, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                executor.shutdown(wait=True, cancel_futures=True)
                executor = None
                lost = [i] + [j for j, _ in pending]
                pending.clear()
                if i in suspects:  # it killed a worker while running alone
                    src = sources[i]
                    error = "a worker process died while reading this input (a crash in a decoder, or out of memory)"
                    yield [], SourceReport(src.name, src.kind, error=error)
                    lost = lost[1:]
                suspects.update(lost)
                queue.extendleft(reversed(lost))
                continue
            yield result
    except BaseException:  # Ctrl-C, or the caller stopped (an exception in on_row) while work was in flight
        if executor is not None:
            _stop_workers(executor)
            executor = None
        raise
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, cv2.error):
        text = text.splitlines()[-1].strip() if text else "OpenCV error"
    return text.splitlines()[0] if text else type(exc).__name__


def format_header() -> str:
    """The terminal table's header line."""
    return f"{'file':<28} {'frame':>5} {'face':>4} {'x0':>7} {'y0':>7} {'x1':>7} {'y1':>7} {'score':>5} " + (
        f"{'yaw':>7} {'pitch':>7} {'roll':>7} {'saturated':>9}"
    )


def format_row(row: dict[str, Any]) -> str:
    """One row of the terminal table: box in pixels (1 decimal), angles in degrees (1 decimal), saturated yes/no."""
    name = row["file"] if len(row["file"]) <= 28 else "..." + row["file"][-25:]
    saturated = "yes" if row.get("saturated") else "no"
    return (
        f"{name:<28} {row['frame']:>5} {row['face']:>4} {row['x0']:>7.1f} {row['y0']:>7.1f} {row['x1']:>7.1f} "
        f"{row['y1']:>7.1f} {row['score']:>5.2f} {row['yaw']:>7.1f} {row['pitch']:>7.1f} {row['roll']:>7.1f} "
        f"{saturated:>9}"
    )


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text with a `COLUMNS` header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary_to_json(summary: PredictSummary, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready dict: ``faces`` (the rows), ``inputs`` (one report each) and ``meta``."""
    inputs = []
    for s in summary.sources:
        item = {"file": s.name, "kind": s.kind, "faces": s.faces, "frames": s.frames, "error": s.error}
        if s.kind in ("video", "camera"):
            item["fps"] = round(s.fps, 2)
        item["output"] = str(s.output) if s.output else None
        inputs.append(item)
    return {"meta": meta or {}, "faces": summary.rows, "inputs": inputs}


def write_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Writes `rows_to_csv` atomically."""
    write_bytes(path, rows_to_csv(rows).encode())
