"""``qa-headpose predict``: the head pose of every face in images, folders, videos or a webcam."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qa_headpose import __version__
from qa_headpose.cli.common import (
    Progress,
    UsageError,
    camera_index,
    check_output,
    non_negative_float,
    positive_float,
    positive_int,
)

HELP = "head pose of every face in images, folders, videos or a webcam"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``predict``."""
    p.add_argument("paths", nargs="*", help="images, folders of images, video files (none: the shipped sample image)")
    p.add_argument("--cam", type=camera_index, metavar="N", help="read webcam N instead of paths (Ctrl-C stops)")
    p.add_argument("--model", help="'accurate' (default, 128x128), 'fast' (80x80) or a head-pose .tflite path")
    p.add_argument(
        "--mirror",
        action="store_true",
        help="average each face with its mirror image: ~0.08 deg better, ~2x model time",
    )
    p.add_argument("--detector", default="short", help="'short' (default), 'full' (small faces) or a .tflite")
    p.add_argument("--threads", type=positive_int, default=2, help="interpreter threads")
    p.add_argument(
        "--jobs", type=positive_int, default=1, help="spread the inputs over N processes (rows stay in input order)"
    )
    p.add_argument("--max-faces", type=positive_int, help="at most N faces per image/frame, best detector score first")
    p.add_argument("--min-score", type=positive_float, default=0.5, help="lowest detector confidence, in (0, 1)")
    p.add_argument("--json", metavar="FILE", help="write faces and per-input reports as JSON ('-': stdout)")
    p.add_argument("--csv", metavar="FILE", help="write faces as CSV ('-': stdout)")
    p.add_argument("--output", metavar="DIR|FILE", help="annotated copies: a folder, or one image/video file")
    p.add_argument("--draw", choices=("axes", "cube", "both"), default="axes", help="what to draw at each face")
    p.add_argument(
        "--smooth", action="store_true", help="video: One-Euro filter on each track's angles (yaw, pitch, roll) and box"
    )
    p.add_argument("--smooth-cutoff", type=positive_float, default=1.0, help="One-Euro cutoff at rest, Hz")
    p.add_argument("--smooth-beta", type=non_negative_float, default=0.02, help="cutoff increase per deg/s")
    p.add_argument("--max-frames", type=positive_int, help="stop each video (or the webcam) after N frames")
    p.add_argument("--show", action="store_true", help="show video frames in a window (OpenCV with GUI only)")
    p.add_argument("--quiet", action="store_true", help="no table on the terminal, no progress bars")
    p.add_argument(
        "--progress", action="store_true", help="progress bars (inputs, video frames) on stderr even off a terminal"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on a Ray cluster: 'auto' (the one on this machine), 'local' (start one) or head:port (needs [ray])",
    )
    p.add_argument(
        "--out", metavar="FILE", help="with --ray: the Parquet file of pose rows (one row per input at least)"
    )


def run(args: argparse.Namespace) -> int:
    """Runs ``predict``; returns the exit code (`run_predict`'s status). Status lines go to stderr."""
    from qa_headpose.core.atomic import write_json
    from qa_headpose.predict import config, formats, run

    if args.ray or args.out:
        return _run_ray(args)
    if args.json == "-" and args.csv == "-":
        raise UsageError("--json - and --csv - cannot both write to stdout")
    if args.cam is not None and args.paths:
        raise UsageError("give either paths or --cam, not both")
    if not args.min_score < 1:
        raise UsageError(f"--min-score must be in (0, 1). Received: {args.min_score}")
    for out in (args.json, args.csv):
        if out and out != "-":
            check_output(Path(out), args.force)
    smooth = _smooth(args)
    cfg = config.PredictConfig(
        inputs=tuple(args.paths),
        camera=args.cam,
        model=args.model,
        mirror=args.mirror,
        detector=args.detector,
        threads=args.threads,
        max_faces=args.max_faces,
        min_score=args.min_score,
        draw=args.draw,
        output=args.output,
        smooth=smooth,
        max_frames=args.max_frames,
        show=args.show,
        force=args.force,
        jobs=args.jobs,
    )
    to_stdout = "-" in (args.json, args.csv)
    show_table = not (args.quiet or to_stdout)
    header_done: list[bool] = []
    progress = Progress(args, {"inputs": "input", "frames": "frame"})

    def on_row(row: dict) -> None:
        if not show_table:
            return
        if not header_done:
            progress.write(formats.format_header())
            header_done.append(True)
        progress.write(formats.format_row(row))

    def on_source(report) -> None:
        if report.error:
            progress.write(f"qa-headpose predict: error: {report.error}", file=sys.stderr)
            return
        if report.faces == 0:
            progress.write(f"qa-headpose predict: no face found in {report.name}", file=sys.stderr)
        if report.kind in ("video", "camera"):
            progress.write(
                f"{report.name}: {report.frames} frames, a face in {report.frames_with_face}, {report.fps:.1f} FPS"
                + (f" -> {report.output}" if report.output else ""),
                file=sys.stderr,
            )
        elif report.output:
            progress.write(f"wrote {report.output}", file=sys.stderr)

    with progress:
        summary = run.run_predict(cfg, on_row=on_row, on_source=on_source, on_progress=progress)
    meta = {"version": __version__, "model": args.model or "accurate", "detector": args.detector}
    if args.json == "-":
        print(json.dumps(formats.summary_to_json(summary, meta), indent=2))
    elif args.json:
        write_json(args.json, formats.summary_to_json(summary, meta))
        print(f"wrote {args.json} ({len(summary.rows)} faces, {len(summary.sources)} inputs)", file=sys.stderr)
    if args.csv == "-":
        print(formats.rows_to_csv(summary.rows), end="")
    elif args.csv:
        formats.write_csv(summary.rows, args.csv)
        print(f"wrote {args.csv} ({len(summary.rows)} rows)", file=sys.stderr)
    failed = summary.failed
    if failed and len(summary.sources) > 1:
        names = ", ".join(s.name for s in failed[:5]) + (", ..." if len(failed) > 5 else "")
        print(f"qa-headpose predict: {len(failed)} of {len(summary.sources)} inputs failed: {names}", file=sys.stderr)
    return summary.status


def _run_ray(args: argparse.Namespace) -> int:
    """``predict --ray ADDRESS --out FILE``: the pose rows of every input in one Parquet file."""
    from qa_headpose.predict import ray_data
    from qa_headpose.predict.config import PredictConfig

    if not (args.ray and args.out):
        raise UsageError("--ray and --out go together: --ray auto --out poses.parquet")
    refused = [
        f
        for f, v in (
            ("--cam", args.cam is not None),
            ("--output", args.output),
            ("--show", args.show),
            ("--json", args.json),
            ("--csv", args.csv),
        )
        if v
    ]
    if refused:
        raise UsageError(f"{', '.join(refused)} cannot be used with --ray (it writes the --out Parquet file)")
    if not args.paths:
        raise UsageError("--ray needs inputs: folders, images, videos, file lists (.txt) or Parquet files")
    if not args.min_score < 1:
        raise UsageError(f"--min-score must be in (0, 1). Received: {args.min_score}")
    check_output(Path(args.out), args.force)
    smooth = _smooth(args)
    cfg = PredictConfig(
        inputs=tuple(args.paths), model=args.model, mirror=args.mirror, detector=args.detector,
        threads=args.threads, max_faces=args.max_faces, min_score=args.min_score, smooth=smooth,
        max_frames=args.max_frames,
    )  # fmt: skip
    with Progress(args, {"inputs": "input"}) as progress:
        summary = ray_data.run_ray(cfg, args.ray, args.out, on_progress=progress)
    print(
        f"wrote {args.out} ({summary.rows} rows: {summary.faces} faces, {summary.inputs} inputs, "
        f"{summary.failed} failed) in {summary.seconds:.1f} s",
        file=sys.stderr,
    )
    return summary.status


def _smooth(args: argparse.Namespace):
    from qa_headpose.inference.video import SmoothConfig

    return SmoothConfig(args.smooth_cutoff, args.smooth_beta) if args.smooth else None
