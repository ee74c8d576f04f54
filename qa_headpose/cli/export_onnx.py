"""``qa-headpose export-onnx``: a run to float and int8 (QDQ) ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from qa_headpose.cli.common import EXIT_OK, check_output, comma_choices, positive_int

HELP = "export a run to float and int8 (QDQ) ONNX"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``export-onnx``."""
    p.add_argument("run", type=Path, help="a training run folder (qa-headpose train --out)")
    p.add_argument("--out", type=Path, required=True, help="folder for the .onnx files and their .json")
    p.add_argument("--variants", default="float,int8", help="comma list of float, int8 (static QDQ)")
    p.add_argument("--num-calibration", type=positive_int, default=200, help="training crops to calibrate int8")
    p.add_argument("--opset", type=positive_int, default=17)
    p.add_argument("--name", default="headpose", help="file name prefix")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args: argparse.Namespace) -> int:
    """Runs ``export-onnx``; returns the exit code."""
    import numpy as np

    from qa_headpose.training.onnx_export import ONNX_VARIANTS, export_onnx_run

    variants = comma_choices(args.variants, "--variants", ONNX_VARIANTS)
    for v in variants:
        check_output(args.out / f"{args.name}_onnx_{v}.onnx", args.force)
    from qa_headpose.training import workflow

    run_cfg = workflow.read_run_config(args.run)
    calibration = None
    if "int8" in variants:
        train = workflow.run_train_faces(run_cfg)
        pick = np.random.default_rng(0).permutation(len(train))[: args.num_calibration]
        calibration = train.subset(pick).crops(run_cfg["model"].input_size).astype(np.float32)
    written = export_onnx_run(args.run, args.out, calibration, variants, args.name, args.opset)
    for variant, meta in written.items():
        print(
            f"onnx {variant}: {args.out / (args.name + '_onnx_' + variant + '.onnx')} {meta['file_size_bytes'] / 1e6:.2f} MB"
        )
    return EXIT_OK
