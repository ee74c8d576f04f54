"""``qa-headpose export``: a run's QAT model to full-int8, float32 and dynamic-range TFLite."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from qa_headpose.cli.common import (
    EXIT_OK,
    UsageError,
    add_progress,
    add_runs_dir,
    check_output,
    comma_choices,
    positive_int,
    progress_bar,
)
from qa_headpose.cli.status import status, ticking

HELP = "export a run to full-int8, float32 and dynamic-range TFLite"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``export``."""
    p.add_argument(
        "run",
        type=Path,
        nargs="?",
        help="a training run folder (default: the newest run under --runs-dir, by its qat/best.weights.h5)",
    )
    p.add_argument("--out", type=Path, help="folder for the .tflite files and their .json (default: RUN/models)")
    p.add_argument("--variants", default="int8,float32,dynamic", help="comma list of int8, float32, dynamic")
    p.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8")
    p.add_argument("--num-calibration", type=positive_int, default=200)
    p.add_argument("--data", nargs="+", help="calibration data for int8 (default: the run's own train split)")
    p.add_argument("--name", default="headpose", help="file name prefix")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    add_runs_dir(p)
    add_progress(p)


def run(args: argparse.Namespace) -> int:
    """Runs ``export``; returns the exit code."""
    from qa_headpose.training.config import ExportConfig

    variants = comma_choices(args.variants, "--variants", ("int8", "float32", "dynamic"), dedupe=True)
    from qa_headpose.datasets import load
    from qa_headpose.training import workflow

    run_dir = args.run
    if run_dir is None:
        from qa_headpose.bench.models import newest_run, runs_dir

        run_dir = newest_run(args.runs_dir)
        if run_dir is None:
            raise UsageError(
                f"no trained run in {runs_dir(args.runs_dir)}/ (no RUN/qat/best.weights.h5); "
                "train one with `qa-headpose train --out runs/NAME`, or pass the run folder"
            )
    run = workflow.read_run_config(run_dir)
    out = args.out if args.out is not None else run_dir / "models"
    for v in variants:
        for suffix in (".tflite", ".json"):
            check_output(out / f"{args.name}_{v}{suffix}", args.force)
    calibration = None
    if "int8" in variants:  # the representative dataset: the run's own training crops
        status("reading the calibration faces (%s)", ", ".join(args.data or run["data"].get("data") or ["none"]))
        if args.data:
            calibration, _ = load.load_filtered(args.data)
        else:
            if not run["data"].get("data"):
                raise UsageError(f"{run_dir} records no training data; pass --data for the int8 calibration crops")
            calibration = workflow.run_train_faces(run)
    if args.run is None:
        trained = time.strftime("%Y-%m-%d %H:%M", time.localtime((run_dir / "qat" / "best.weights.h5").stat().st_mtime))
        print(f"exporting the newest run {run_dir} (QAT weights of {trained}) to {out}")
    else:
        print(f"exporting {run_dir} to {out}")
    cfg = ExportConfig(num_calibration=args.num_calibration, io_dtype=args.io_dtype)
    written = {}
    with progress_bar(args, len(variants), "model") as bar:
        for variant in variants:
            bar.set_description(f"converting {variant}")
            with ticking(bar):
                written.update(workflow.export_run(run_dir, out, calibration, cfg, (variant,), args.name))
            bar.update(1)
    for variant, meta in written.items():
        print(
            f"{variant}: {out / (args.name + '_' + variant + '.tflite')} {meta['file_size_bytes'] / 1e6:.2f} MB, "
            f"input {meta['input_dtype']}, output {meta['output_dtype']}, fully int8: {meta['fully_int8']}"
        )
    return EXIT_OK
