"""What a ``qa-headpose predict`` run does (`PredictConfig`) and what it gives back (`PredictSummary`, exit status)."""

from __future__ import annotations

import dataclasses
from typing import Any

from qa_headpose.inference.detect import MIN_SCORE
from qa_headpose.inference.video import SmoothConfig
from qa_headpose.predict.sources import SourceReport

DRAW_MODES = ("axes", "cube", "both")
# Exit statuses of a run (the CLI returns them): everything read and at least one face;
# some inputs failed or no face at all; nothing could be read.
STATUS_OK, STATUS_PARTIAL, STATUS_FAILED = 0, 1, 2


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
    """The result of `run_predict`: one row per face (`formats.COLUMNS`) and one report per input."""

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
