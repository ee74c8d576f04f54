"""``qa-headpose evaluate``: per-angle MAE of a .tflite or a run's Keras model on a dataset, by |yaw| band."""

from __future__ import annotations

import argparse
from pathlib import Path

from qa_headpose.cli.common import EXIT_OK, Progress, add_progress, check_output, format_mae, positive_int

HELP = "per-angle MAE of a .tflite or Keras model on a dataset"


def _model(text: str) -> Path:
    """A shipped model's name -> its .tflite (as predict --model); anything else is a path."""
    from qa_headpose.inference.registry import resolve_model

    return resolve_model(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``evaluate``."""
    p.add_argument(
        "model", type=_model, help="a shipped model name (accurate, fast), a .tflite file, or a training run folder"
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="FSA-Net .npz file(s), 300W-LP/AFLW2000, BIWI, AFLW_extra or Pointing'04 folder(s)",
    )
    p.add_argument("--subset", choices=("all", "val", "train"), default="all", help="part of --data by --split")
    p.add_argument("--split", default="aflw2000_val", help="committed val list name, or 'hash'")
    p.add_argument("--phase", choices=("float", "qat"), default="qat", help="which Keras model of a run folder")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument(
        "--mirror", action="store_true", help="average each face with its mirror image (as predict --mirror)"
    )
    p.add_argument("--expect-int8", action="store_true", help="fail unless the model is a full-int8 .tflite")
    p.add_argument("--json", type=Path, help="write the metrics as JSON")
    p.add_argument("--plot", type=Path, help="write abs error vs ground-truth yaw as PNG")
    p.add_argument("--reach-plot", type=Path, help="write predicted vs labelled yaw (calibration) as PNG")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_progress(p)


def run(args: argparse.Namespace) -> int:
    """Runs ``evaluate``; returns the exit code."""
    for out in (args.json, args.plot, args.reach_plot):
        if out is not None:
            check_output(out, args.force)
    from qa_headpose import evaluation
    from qa_headpose.core.atomic import write_json
    from qa_headpose.evaluation import bands

    split = None if args.split == "hash" else args.split
    with Progress(args) as progress:
        metrics, pred, faces, counts = evaluation.evaluate_on_data(
            args.model, args.data, args.subset, split, args.phase, args.threads, args.expect_int8, progress, args.mirror
        )
    label = f"{args.model}" + (f" [{args.phase}]" if args.model.suffix != ".tflite" else "")
    label += " + mirror" if args.mirror else ""
    print(format_mae(label, metrics) + f"  (dropped by |angle|<=99: {counts['dropped']})")
    summary = bands.report(pred, faces.poses)
    print(bands.format_bands(summary["bands"]))
    print(
        f"pitch MAE on |labelled pitch| <= {bands.MODERATE_PITCH_DEG:g}: {summary['pitch_moderate']:.2f}; reach: faces "
        f"labelled |yaw| {summary['reach']['labelled_abs_yaw']:g} read as {summary['reach']['mean_pred_abs_yaw']:.1f} on average"
    )
    if args.json:
        write_json(
            args.json,
            {
                "model": str(args.model),
                "data": args.data,
                "subset": args.subset,
                "mirror": args.mirror,
                **metrics,
                "dropped": counts["dropped"],
                "pitch_moderate": summary["pitch_moderate"],
                "bands": summary["bands"],
                "reach": summary["reach"],
            },
        )
    if args.plot:
        evaluation.plot_errors(pred, faces.poses, args.plot, title=str(args.model.name))
    if args.reach_plot:
        evaluation.plot_reach(pred, faces.poses, args.reach_plot, title=str(args.model.name))
    return EXIT_OK
