"""The inputs and outputs of ``predict``: which files, folders, videos and cameras, and where each result goes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from qa_headpose.core.outputs import folder_problem
from qa_headpose.inference.registry import SAMPLE_IMAGE
from qa_headpose.inference.video import VIDEO_FOURCC

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclasses.dataclass(frozen=True)
class Source:
    """One input: ``kind`` is "image", "video" or "camera"; ``name`` is what rows show as ``file``."""

    kind: str
    name: str
    path: Path | None = None
    camera: int | None = None


@dataclasses.dataclass
class SourceReport:
    """What happened to one input.

    Attributes:
        name: the input as rows show it.
        kind: "image", "video", "camera" or "folder" (a folder that held no image).
        faces: faces found (over all frames for a video).
        frames: frames read (1 for an image).
        frames_with_face: frames in which at least one face was found.
        seconds: processing time, reading and writing included.
        output: the annotated file written, if any.
        error: one-line reason when the input could not be processed, else None.
    """

    name: str
    kind: str
    faces: int = 0
    frames: int = 0
    frames_with_face: int = 0
    seconds: float = 0.0
    output: Path | None = None
    error: str | None = None

    @property
    def fps(self) -> float:
        """Frames processed per second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def collect_sources(
    inputs: tuple[str, ...] | list[str], camera: int | None = None
) -> tuple[list[Source], list[SourceReport]]:
    """Expands the inputs: a folder gives its image files (sorted, not recursive).

    Args:
        inputs: paths as given on the command line; empty for the sample image.
        camera: a webcam index instead of paths.

    Returns:
        (sources, reports of inputs that cannot be used: missing paths, folders without images).
    """
    if camera is not None:
        return [Source("camera", f"camera{camera}", camera=int(camera))], []
    if not inputs:
        return [Source("image", SAMPLE_IMAGE.name, SAMPLE_IMAGE)], []
    sources, bad = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                bad.append(
                    SourceReport(text, "folder", error=f"No images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
                )
            sources += [Source("image", str(p), p) for p in images]
        elif not path.exists():
            bad.append(SourceReport(text, "image", error=f"No such file or folder: {path}"))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(Source("video", text, path))
        else:
            sources.append(Source("image", text, path))
    return sources, bad


def plan_outputs(sources: list[Source], output: str | os.PathLike | None, force: bool = False) -> dict[int, Path]:
    """Where each input's annotated copy goes.

    A path ending in an image or video suffix is one output file (for exactly one input);
    anything else is a folder that gets one file per input: the image's own name, or
    the video's stem + ``.mp4``.

    Returns:
        {index into sources: output path}; empty when ``output`` is None.

    Raises:
        FileExistsError: if an output exists and ``force`` is False.
        ValueError: for a file output with several inputs, a suffix that does not fit the
            input, an output that is one of the inputs, or a folder that cannot be written
            (a parent that is a file, a read-only place).
        NotADirectoryError: if a folder output is an existing file.
    """
    if output is None or not sources:
        return {}
    out = Path(output)
    suffix = out.suffix.lower()
    plan: dict[int, Path] = {}
    if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
        if len(sources) != 1:
            raise ValueError(f"--output {out} is one file but there are {len(sources)} inputs; give a folder")
        is_video = sources[0].kind in ("video", "camera")
        if is_video and suffix not in VIDEO_FOURCC:
            raise ValueError(f"A video is written as {', '.join(sorted(VIDEO_FOURCC))}. Received: --output {out}")
        if not is_video and suffix not in IMAGE_SUFFIXES:
            raise ValueError(f"An image is written as {', '.join(IMAGE_SUFFIXES)}. Received: --output {out}")
        plan[0] = out
    else:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"--output {out} is a file; give a folder or an image/video file name")
        used: set[str] = set()
        for i, src in enumerate(sources):
            name = src.path.name if src.kind == "image" else f"{src.path.stem if src.path else src.name}.mp4"
            stem, ext, n = Path(name).stem, Path(name).suffix, 1
            while name in used:
                name, n = f"{stem}_{n}{ext}", n + 1
            used.add(name)
            plan[i] = out / name
    for i, path in plan.items():
        src = sources[i].path
        if src is not None and path.exists() and src.exists() and os.path.samefile(src, path):
            raise ValueError(f"--output would overwrite the input {src}")
        if path.exists() and not force:
            raise FileExistsError(f"{path} already exists; pass --force to overwrite it")
    for folder in sorted({path.parent for path in plan.values()}):
        problem = folder_problem(folder)
        if problem:
            raise ValueError(f"Cannot write --output {out}: {problem}")
    return plan
