"""``qa-headpose`` command line: argument parsing and calls into the package, nothing more.

Every subcommand returns an exit code: 0 on success, 2 for bad input (one line on
stderr, no traceback), 1 for an unexpected failure (one line too; set QA_HEADPOSE_TRACEBACK=1
to see the traceback). Bad input is a bad command line (argparse's error, without the usage
block), `UsageError`, `data.DataError`, `runtime.ModelError` or another ValueError/OSError.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from qa_headpose import __version__

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """A problem with the command line itself (existing output, conflicting flags)."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``prog: error: ...``) and exit code 2, without the usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _camera_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a camera index 0, 1, ..., got {text!r}") from None
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"expected a camera index 0, 1, ..., got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def _check_output(path: Path, force: bool) -> None:
    """Refuses, before any work, an output that exists (without --force) or cannot be written."""
    from qa_headpose.inference.outputs import output_problem

    problem = output_problem(path, force)
    if problem:
        raise UsageError(problem)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- train
def _add_train(p: argparse.ArgumentParser) -> None:
    from qa_headpose.training.presets import PRESETS

    p.add_argument(
        "--preset", choices=sorted(PRESETS), help="start from a named recipe ('default' = the shipped model)"
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
    g.add_argument("--input-size", type=_positive_int)
    g.add_argument("--alpha", type=_positive_float)
    g.add_argument("--dropout", type=_non_negative_float)
    g.add_argument("--backbone-weights", help="'imagenet' (needs internet) or a ported .h5 (qa-headpose port-imagenet)")
    g = p.add_argument_group("float phase")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--batch-size", type=_positive_int)
    g.add_argument("--learning-rate", type=_positive_float)
    g.add_argument("--weight-decay", type=_non_negative_float)
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("QAT phase")
    g.add_argument("--qat-epochs", type=_positive_int)
    g.add_argument("--qat-learning-rate", type=_positive_float)
    g = p.add_argument_group("augmentation (train split only)")
    g.add_argument("--no-augment", action="store_true", help="no augmentation at all")
    g.add_argument("--no-flip", action="store_true")
    g.add_argument("--rotate-deg", type=_non_negative_float)
    g.add_argument("--scale-jitter", type=_non_negative_float)
    g.add_argument("--shift-jitter", type=_non_negative_float)
    g.add_argument("--no-photometric", action="store_true")
    g.add_argument("--init-weights", help="float weights (.h5) of a trained head-pose model to start from")
    g = p.add_argument_group("extra faces (train split only)")
    g.add_argument("--extra", help="an AFLW_extra folder whose faces join the train split")
    g.add_argument("--extra-labels", choices=("pseudo", "aflw", "both"), help="a teacher's labels, AFLW's own or both")
    g.add_argument("--pseudo-labels", help="the teacher's CSV (qa-headpose data pseudo-label)")
    g.add_argument("--labelled-repeat", type=_positive_int, help="repeat the labelled train faces N times per epoch")
    g.add_argument("--max-mirror-deg", type=_positive_float, help="drop pseudo-labels whose mirror disagrees more")
    g.add_argument("--max-gt-yaw-gap-deg", type=_positive_float, help="drop pseudo-labels this far from AFLW's yaw")
    g.add_argument("--no-extra", action="store_true", help="ignore the preset's extra faces")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")


def _train_configs(args: argparse.Namespace):
    from qa_headpose.training.config import AugmentConfig, ModelConfig, QATConfig, TrainConfig
    from qa_headpose.training.presets import PRESETS

    preset = PRESETS[args.preset] if args.preset else {}
    model = preset.get("model", ModelConfig())
    train = preset.get("train", TrainConfig())
    qat = preset.get("qat", QATConfig())

    def pick(value, default):
        return default if value is None else value

    backbone_weights = pick(args.backbone_weights, model.backbone_weights)
    # torchvision ships ImageNet weights for width 1.0 only: they pick the width unless --alpha says otherwise.
    alpha = pick(args.alpha, 1.0 if backbone_weights == "torchvision" else model.alpha)
    model = ModelConfig(
        input_size=pick(args.input_size, model.input_size),
        alpha=alpha,
        dropout=pick(args.dropout, model.dropout),
        backbone_weights=backbone_weights,
        bn_momentum=model.bn_momentum,
    )
    aug = train.augment
    if args.no_augment:
        aug = AugmentConfig.none()
    aug = AugmentConfig(
        flip=aug.flip and not args.no_flip,
        rotate_deg=pick(args.rotate_deg, aug.rotate_deg),
        scale_jitter=pick(args.scale_jitter, aug.scale_jitter),
        shift_jitter=pick(args.shift_jitter, aug.shift_jitter),
        photometric=aug.photometric and not args.no_photometric,
    )
    seed = pick(args.seed, train.seed)
    train = TrainConfig(
        epochs=pick(args.epochs, train.epochs),
        batch_size=pick(args.batch_size, train.batch_size),
        learning_rate=pick(args.learning_rate, train.learning_rate),
        weight_decay=pick(args.weight_decay, train.weight_decay),
        seed=seed,
        augment=aug,
        init_weights=pick(args.init_weights, train.init_weights),
    )
    qat = QATConfig(
        epochs=pick(args.qat_epochs, qat.epochs),
        batch_size=train.batch_size,
        learning_rate=pick(args.qat_learning_rate, qat.learning_rate),
        seed=seed + 1,
        augment=aug,
    )
    data = args.data or ([preset["data"]] if preset.get("data") else None)
    if not data:
        raise UsageError("--data is required (or a --preset that names its data)")
    return model, train, qat, data, _extra_config(args, None if args.no_extra else preset.get("extra"))


def _extra_config(args: argparse.Namespace, preset_extra):
    """The extra-faces config from the preset and the flags; None without extra faces."""
    import dataclasses

    from qa_headpose.training.config import ExtraDataConfig

    if args.no_extra and args.extra:
        raise UsageError("--no-extra and --extra contradict each other")
    flags = {
        "path": args.extra,
        "labels": args.extra_labels,
        "pseudo_labels": args.pseudo_labels,
        "labelled_repeat": args.labelled_repeat,
        "max_mirror_deg": args.max_mirror_deg,
        "max_gt_yaw_gap_deg": args.max_gt_yaw_gap_deg,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if preset_extra is None and not args.extra:
        if given:
            raise UsageError(f"--{next(iter(given)).replace('_', '-')} needs --extra FOLDER")
        return None
    try:
        if preset_extra is None:
            return ExtraDataConfig(**given)
        return dataclasses.replace(preset_extra, **given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run_train(args: argparse.Namespace) -> int:
    model_cfg, train_cfg, qat_cfg, data, extra = _train_configs(args)
    if (args.out / "float" / "ckpt").exists() and not args.resume:
        raise UsageError(f"{args.out} already holds a training run; pass --resume to continue it or choose a new --out")
    from qa_headpose.training import workflow

    split = None if args.split == "hash" else args.split
    if extra is not None and extra.labels in ("pseudo", "both") and not Path(extra.pseudo_labels).is_file():
        raise UsageError(
            f"No pseudo-labels at {extra.pseudo_labels}; make them first: qa-headpose data pseudo-label "
            f"{extra.path} --out {extra.pseudo_labels}"
        )
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
        print(_format_mae(f"{phase} keras val", summary[phase]["val"]) + f"  ({summary[phase]['seconds']} s)")
    print(f"wrote {args.out}/float/best.weights.h5, {args.out}/qat/best.weights.h5, {args.out}/summary.json")
    return EXIT_OK


def _format_mae(label: str, m: dict) -> str:
    return (
        f"{label}: MAE yaw {m['yaw']:.2f}  pitch {m['pitch']:.2f}  roll {m['roll']:.2f}  "
        f"mean {m['mean']:.2f} deg  (n={m['count']})"
    )


# ---------------------------------------------------------------- export
def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        type=Path,
        nargs="?",
        help="a training run folder (default: the newest run under --runs-dir, by its qat/best.weights.h5)",
    )
    p.add_argument("--out", type=Path, help="folder for the .tflite files and their .json (default: RUN/models)")
    p.add_argument("--variants", default="int8,float32,dynamic", help="comma list of int8, float32, dynamic")
    p.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8")
    p.add_argument("--num-calibration", type=_positive_int, default=200)
    p.add_argument("--data", nargs="+", help="calibration data for int8 (default: the run's own train split)")
    p.add_argument("--name", default="headpose", help="file name prefix")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    _add_runs_dir(p)
    _add_progress(p)


def _add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs-dir", type=Path, help="folder of your training runs (default: $QA_HEADPOSE_RUNS_DIR or runs)"
    )


def _add_progress(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", action="store_true", help="progress bars on stderr even when it is not a terminal")
    g.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")


def _progress_bar(args: argparse.Namespace, total: int, unit: str):
    """A tqdm bar on stderr: shown on a terminal or with --progress, never with --quiet."""
    from tqdm import tqdm

    show = not args.quiet and (args.progress or sys.stderr.isatty())
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=not show, dynamic_ncols=True)


def _run_export(args: argparse.Namespace) -> int:
    import time

    from qa_headpose.training.config import ExportConfig

    variants = tuple(dict.fromkeys(v.strip() for v in args.variants.split(",") if v.strip()))
    bad = set(variants) - {"int8", "float32", "dynamic"}
    if bad or not variants:
        raise UsageError(f"--variants takes int8, float32, dynamic. Received: {args.variants!r}")
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
            _check_output(out / f"{args.name}_{v}{suffix}", args.force)
    calibration = None
    if "int8" in variants:  # the representative dataset: the run's own training crops
        if args.data:
            calibration, _ = workflow.load_filtered(args.data)
        else:
            data = run["data"]
            if not data.get("data"):
                raise UsageError(f"{run_dir} records no training data; pass --data for the int8 calibration crops")
            calibration = workflow.prepare_data(
                data["data"], data.get("val_data") or None, _split_of(data), data.get("limit_deg")
            ).train
    if args.run is None:
        trained = time.strftime("%Y-%m-%d %H:%M", time.localtime((run_dir / "qat" / "best.weights.h5").stat().st_mtime))
        print(f"exporting the newest run {run_dir} (QAT weights of {trained}) to {out}")
    else:
        print(f"exporting {run_dir} to {out}")
    cfg = ExportConfig(num_calibration=args.num_calibration, io_dtype=args.io_dtype)
    written = {}
    with _progress_bar(args, len(variants), "model") as bar:
        for variant in variants:
            bar.set_description(f"converting {variant}")
            written.update(workflow.export_run(run_dir, out, calibration, cfg, (variant,), args.name))
            bar.update(1)
    for variant, meta in written.items():
        print(
            f"{variant}: {out / (args.name + '_' + variant + '.tflite')} {meta['file_size_bytes'] / 1e6:.2f} MB, "
            f"input {meta['input_dtype']}, output {meta['output_dtype']}, fully int8: {meta['fully_int8']}"
        )
    return EXIT_OK


def _check_model(path: Path, expect_int8: bool = False) -> None:
    """Loads a .tflite (or reads a run folder's config) so a bad model fails at once.

    Raises:
        ModelError: for a missing, corrupt or non-head-pose .tflite, one that disagrees with its
            JSON, or (``expect_int8``) a model that is not a full-int8 .tflite.
        FileNotFoundError, ValueError: for a folder that is not a training run.
    """
    from qa_headpose.core.errors import ModelError
    from qa_headpose.inference.runtime import TFLiteRunner
    from qa_headpose.training import workflow

    if path.suffix != ".tflite":
        workflow.read_run_config(path)
        if expect_int8:
            raise ModelError(f"--expect-int8: {path} is a Keras run folder, not a full-int8 .tflite")
        return
    runner = TFLiteRunner(path)
    if expect_int8 and not runner.is_fully_int8():
        raise ModelError(
            f"--expect-int8: {path} is not a full-int8 model (input {runner.input_dtype.name}, "
            f"output {runner.output_dtype.name})"
        )


def _split_of(data_report: dict) -> str | None:
    split = data_report.get("split")
    return split if split and not split.startswith(("sha1", "separate")) else None


# ---------------------------------------------------------------- evaluate
def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="a .tflite file, or a training run folder (Keras)")
    p.add_argument("--data", nargs="+", required=True, help="FSA-Net .npz file(s) or 300W-LP/AFLW2000 folder(s)")
    p.add_argument("--subset", choices=("all", "val", "train"), default="all", help="part of --data by --split")
    p.add_argument("--split", default="aflw2000_val", help="committed val list name, or 'hash'")
    p.add_argument("--phase", choices=("float", "qat"), default="qat", help="which Keras model of a run folder")
    p.add_argument("--threads", type=_positive_int, default=2)
    p.add_argument("--expect-int8", action="store_true", help="fail unless the model is a full-int8 .tflite")
    p.add_argument("--json", type=Path, help="write the metrics as JSON")
    p.add_argument("--plot", type=Path, help="write abs error vs ground-truth yaw as PNG")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _run_evaluate(args: argparse.Namespace) -> int:
    for out in (args.json, args.plot):
        if out is not None:
            _check_output(out, args.force)
    from qa_headpose.core.atomic import write_json
    from qa_headpose.core.errors import DataError
    from qa_headpose.datasets.splits import split_train_val
    from qa_headpose.training import workflow

    for path in args.data:  # cheap checks first: missing data, then a bad model, before any data is read
        if not Path(path).exists():
            raise DataError(f"No such file or folder: {path}")
    _check_model(args.model, args.expect_int8)
    faces, counts = workflow.load_filtered(args.data)
    if args.subset != "all":
        train, val = split_train_val(faces, None if args.split == "hash" else args.split)
        faces = val if args.subset == "val" else train
    metrics, pred = workflow.evaluate_model(args.model, faces, args.phase, args.threads)
    label = f"{args.model}" + (f" [{args.phase}]" if args.model.suffix != ".tflite" else "")
    print(_format_mae(label, metrics) + f"  (dropped by |angle|<=99: {counts['dropped']})")
    if args.json:
        write_json(
            args.json,
            {
                "model": str(args.model),
                "data": args.data,
                "subset": args.subset,
                **metrics,
                "dropped": counts["dropped"],
            },
        )
    if args.plot:
        workflow.plot_errors(pred, faces.poses, args.plot, title=str(args.model.name))
    return EXIT_OK


# ---------------------------------------------------------------- data
def _add_data(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="{crop,download}")
    c = sub.add_parser("crop", help="cache FSA-Net crops of a 300W-LP/AFLW2000 folder as an FSA-Net npz")
    c.add_argument("src", type=Path, help="folder of images with .mat labels")
    c.add_argument("--out", type=Path, required=True, help="the .npz to write")
    c.add_argument("--size", type=_positive_int, default=64)
    c.add_argument("--no-filter", action="store_true")
    c.add_argument("--force", action="store_true")
    q = sub.add_parser("pseudo-label", help="a teacher's (yaw, pitch, roll) for every face of an AFLW_extra folder")
    q.add_argument("src", type=Path, help="an AFLW_extra folder (labels.csv + crops/)")
    q.add_argument("--out", type=Path, required=True, help="the CSV to write (restarts from <out>.partial.npz)")
    q.add_argument("--teacher", nargs="+", help=".tflite model(s) of one input size (default: weights/teacher_v1)")
    q.add_argument("--threads", type=_positive_int, default=2)
    q.add_argument("--limit", type=_positive_int, help="label only the first N faces")
    q.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--force", action="store_true")
    d = sub.add_parser("download", help="fetch FSA-Net's preprocessed data.zip (Google Drive) and unpack it")
    d.add_argument("--out", type=Path, required=True, help="folder to create: type1/*.npz, BIWI_*.npz")
    d.add_argument("--zip", type=Path, help="an already downloaded data.zip: unpack it, fetch nothing")
    d.add_argument("--keep-zip", action="store_true", help="keep the downloaded <out>.zip after unpacking")
    d.add_argument("--force", action="store_true", help="replace an existing --out folder")


def _run_data(args: argparse.Namespace) -> int:
    if args.data_command == "crop":
        if args.out.suffix != ".npz":
            raise UsageError(f"--out must end in .npz. Received: {args.out}")
        _check_output(args.out, args.force)
        from qa_headpose.datasets.npz import save_fsanet_npz
        from qa_headpose.training import workflow

        faces, counts = workflow.load_filtered([args.src], None if args.no_filter else 99.0)
        save_fsanet_npz(faces, args.out, args.size)
        print(
            f"wrote {args.out}: {counts['kept']} faces {args.size}x{args.size} (dropped by |angle|<=99: {counts['dropped']})"
        )
    elif args.data_command == "pseudo-label":
        _check_output(args.out, args.force)
        from qa_headpose.datasets.pseudo_label import pseudo_label_folder
        from qa_headpose.training.presets import TEACHER_MODELS

        teachers = args.teacher or list(TEACHER_MODELS)
        progress = not args.quiet and (args.progress or sys.stderr.isatty())
        summary = pseudo_label_folder(args.src, teachers, args.out, args.threads, progress=progress, limit=args.limit)
        print(
            f"wrote {args.out}: {summary['faces']} faces; teacher mirror disagreement {summary['mirror_mean_deg']:.2f}, "
            f"ensemble spread {summary['spread_mean_deg']:.2f}, |yaw - AFLW gt_yaw| {summary['gt_yaw_gap_deg']:.2f} deg"
        )
    elif args.data_command == "download":
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


# ---------------------------------------------------------------- benchmark
def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}")
    return tuple(dict.fromkeys(values))


def _add_benchmark(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        nargs="+",
        metavar="NAME|PATH",
        help="shipped model names (accurate, fast), .tflite/.onnx files, folders of them, run folders or float "
        "weights .h5 (default: each shipped model as int8 and float32 .tflite and Keras float, and your newest export)",
    )
    p.add_argument(
        "--run", type=Path, help="training run folder: adds its float Keras model (predict_on_batch and call rows)"
    )
    _add_runs_dir(p)
    p.add_argument("--threads", type=_int_list, help="thread counts, e.g. 2 or 1,2,4 (default: all cores)")
    p.add_argument("--batch-sizes", type=_int_list, default=(1, 8), help="throughput batch sizes (default 1,8)")
    p.add_argument(
        "--runtimes",
        default="litert,keras",
        help="comma list of litert, tf.lite, onnxruntime, keras (predict_on_batch), keras.call, or all "
        "(default litert,keras)",
    )
    p.add_argument(
        "--xnnpack", choices=("on", "off", "both"), default="on", help="XNNPACK delegate of the TFLite interpreters"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    p.add_argument("--runs", type=_positive_int, default=100, help="most timed batch-1 calls")
    p.add_argument(
        "--latency-seconds",
        type=_non_negative_float,
        default=1.0,
        help="stop the timed batch-1 calls of a row after this long (at least 10 calls; 0: all --runs)",
    )
    p.add_argument("--throughput-seconds", type=_non_negative_float, default=0.25, help="minimum time per batch size")
    g = p.add_argument_group("accuracy")
    g.add_argument("--data", nargs="+", help="FSA-Net .npz file(s) or 300W-LP/AFLW2000 folder(s): adds per-angle MAE")
    g.add_argument(
        "--subset", choices=("val", "all"), default="val", help="val split of --data (all when it has no val face)"
    )
    g.add_argument("--split", default="aflw2000_val", help="committed val list name, or 'hash'")
    g.add_argument("--max-faces", type=_positive_int, help="evaluate on the first N faces only")
    g = p.add_argument_group("analysis")
    g.add_argument("--profile", action="store_true", help="per-op profile and compute bound of each int8 .tflite")
    g.add_argument("--frame", action="store_true", help="time a 640x480 frame with one face through predict_image")
    g.add_argument(
        "--callers",
        type=_int_list,
        metavar="N,..",
        help="faces/s with N threads sharing one HeadPoseEstimator (first int8 model), e.g. 1,2,4,8",
    )
    g = p.add_argument_group("output")
    g.add_argument("--json", type=Path, help="write every row, the machine and the settings as JSON")
    g.add_argument("--markdown", nargs="?", const="-", help="markdown table to FILE (or stdout without FILE)")
    g.add_argument("--plot", type=Path, help="PNG of latency vs threads per model")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")
    _add_progress(p)


def _benchmark_models(args: argparse.Namespace) -> list:
    """The models to measure: --model, else the shipped ones and your newest export; plus --run."""
    from qa_headpose import bench
    from qa_headpose.bench.models import model_spec

    if args.model:
        specs = bench.find_models(args.model)
    else:
        specs = bench.default_models()
        run = bench.newest_run(args.runs_dir)
        export = bench.run_export(run) if run is not None else None
        if export is not None:
            specs.append(model_spec(export, f"{run} int8", str(run)))
            print(f"also measuring your newest export {export}", file=sys.stderr)
        elif run is not None:
            print(
                f"note: your newest run {run} has no export yet (python export_tflite.py exports it)", file=sys.stderr
            )
    if args.run is not None:
        specs.append(model_spec(args.run))
    return specs


def _run_benchmark(args: argparse.Namespace) -> int:
    from qa_headpose import bench
    from qa_headpose.bench import report as bench_report
    from qa_headpose.inference.runtime import default_max_concurrency

    for out in (args.json, args.plot, None if args.markdown in (None, "-") else Path(args.markdown)):
        if out is not None:
            _check_output(out, args.force)
    runtimes = tuple(v.strip() for v in args.runtimes.split(",") if v.strip())
    runtimes = bench.RUNTIMES if runtimes == ("all",) else runtimes
    if set(runtimes) - set(bench.RUNTIMES) or not runtimes:
        raise UsageError(f"--runtimes takes {', '.join(bench.RUNTIMES)} or all. Received: {args.runtimes!r}")
    cores = default_max_concurrency()
    threads = args.threads or (cores,)
    if max(threads) > cores:
        print(
            f"warning: --threads {max(threads)} exceeds the {cores} cores this process may use: "
            "threads beyond the cores only wait for each other",
            file=sys.stderr,
        )
    specs = _benchmark_models(args)
    int8 = [s for s in specs if s.format == "tflite" and s.variant == "int8"]
    for flag, wanted in (("--frame", args.frame), ("--callers", args.callers)):
        if wanted and not int8:
            raise UsageError(f"{flag} needs an int8 .tflite among the models")
    xnnpack = {"on": (True,), "off": (False,), "both": (True, False)}[args.xnnpack]
    cfg = bench.BenchmarkConfig(
        threads=threads,
        batch_sizes=args.batch_sizes,
        warmup=args.warmup,
        runs=args.runs,
        latency_seconds=args.latency_seconds or None,
        throughput_seconds=args.throughput_seconds,
        runtimes=runtimes,
        xnnpack=xnnpack,
    )
    eval_data = _benchmark_data(args) if args.data else None
    with _progress_bar(args, bench.count_rows(specs, cfg), "row") as bar:

        def progress(label: str, rows: int) -> None:
            if rows:
                bar.update(rows)
            elif not bar.disable:
                bar.set_description(label)
            elif not args.quiet:
                print(f"measuring {label}", file=sys.stderr)

        report = bench.run_benchmark(specs, cfg, eval_data, progress)
    report.command = _invocation()
    if args.profile:
        report.profile = {}
        for spec in int8:
            for t in threads:
                prof = bench.profile_tflite_ops(spec.path, t, runs=max(50, args.runs))
                prof["bound"] = bench.compute_bound(prof, report.system)
                report.profile[f"{spec.name}@{t}"] = prof
    limit = args.latency_seconds or None
    if args.frame:
        report.frame = [
            bench.measure_frame(int8[0].path, t, args.runs, args.warmup, max_seconds=limit) for t in threads
        ]
    if args.callers:
        report.callers = bench.measure_callers(
            int8[0].path, args.callers, seconds=max(4 * args.throughput_seconds, 0.2)
        )
    print(bench.format_table(report))
    for item in report.skipped:
        print(f"skipped {item['model']} on {item['runtime']}: {item['reason']}")
    for name, prof in (report.profile or {}).items():
        b = prof["bound"]
        top = ", ".join(f"{op} {v['ms']:.3f} ms ({v['share']:.0%})" for op, v in list(prof["by_op"].items())[:4])
        print(
            f"profile {name}: {prof['total_ms']:.3f} ms, {b['macs'] / 1e6:.1f} M MACs, {b['achieved_gmacs_per_s']} GMAC/s "
            f"= {b['fraction_of_isa_peak']} of the ISA peak {b['isa_peak_gmacs_per_s']} GMAC/s ({b['isa_assumption']}); "
            f"best op {b['best_op_gmacs_per_s']} GMAC/s -> bound {b['best_op_bound_ms']} ms; by op: {top}"
        )
    for f in report.frame or []:
        print(bench_report.frame_line(f))
    if report.callers:
        print("\n".join(bench_report.callers_lines(report.callers)))
    if args.json:
        bench.write_report_json(report, args.json)
        print(f"wrote {args.json}")
    if args.markdown == "-":
        print(bench.format_markdown(report))
    elif args.markdown:
        from qa_headpose.core.atomic import write_bytes

        write_bytes(args.markdown, bench.format_markdown(report).encode())
        print(f"wrote {args.markdown}")
    if args.plot:
        bench.plot_latency(report, args.plot)
        print(f"wrote {args.plot}")
    summary = bench.format_summary(report)
    if summary:
        print("\n".join([summary[0], *(f"  {line}" for line in summary[1:])]))
    return EXIT_OK


def _invocation() -> str:
    import shlex

    prog = Path(sys.argv[0]).name
    prog = "python -m qa_headpose.cli" if prog == "cli.py" else (f"python {prog}" if prog.endswith(".py") else prog)
    return " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])


def _benchmark_data(args: argparse.Namespace):
    from qa_headpose.datasets.splits import split_train_val
    from qa_headpose.training import workflow

    faces, _ = workflow.load_filtered(args.data)
    if args.subset == "val":
        _, val = split_train_val(faces, None if args.split == "hash" else args.split)
        faces = val if len(val) else faces
    if args.max_faces:
        faces = faces.subset(range(min(args.max_faces, len(faces))))
    return lambda size: (faces.crops(size).astype("float32"), faces.poses)


# ---------------------------------------------------------------- export-onnx
def _add_export_onnx(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="a training run folder (qa-headpose train --out)")
    p.add_argument("--out", type=Path, required=True, help="folder for the .onnx files and their .json")
    p.add_argument("--variants", default="float,int8", help="comma list of float, int8 (static QDQ)")
    p.add_argument("--num-calibration", type=_positive_int, default=200, help="training crops to calibrate int8")
    p.add_argument("--opset", type=_positive_int, default=17)
    p.add_argument("--name", default="headpose", help="file name prefix")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def _run_export_onnx(args: argparse.Namespace) -> int:
    import numpy as np

    from qa_headpose.training.onnx_export import ONNX_VARIANTS, export_onnx_run

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if set(variants) - set(ONNX_VARIANTS) or not variants:
        raise UsageError(f"--variants takes {', '.join(ONNX_VARIANTS)}. Received: {args.variants!r}")
    for v in variants:
        _check_output(args.out / f"{args.name}_onnx_{v}.onnx", args.force)
    from qa_headpose.training import workflow

    run = workflow.read_run_config(args.run)
    calibration = None
    if "int8" in variants:
        data = run["data"]
        prepared = workflow.prepare_data(
            data["data"], data.get("val_data") or None, _split_of(data), data.get("limit_deg")
        )
        pick = np.random.default_rng(0).permutation(len(prepared.train))[: args.num_calibration]
        calibration = prepared.train.subset(pick).crops(run["model"].input_size).astype(np.float32)
    written = export_onnx_run(args.run, args.out, calibration, variants, args.name, args.opset)
    for variant, meta in written.items():
        print(
            f"onnx {variant}: {args.out / (args.name + '_onnx_' + variant + '.onnx')} {meta['file_size_bytes'] / 1e6:.2f} MB"
        )
    return EXIT_OK


# ---------------------------------------------------------------- predict
def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="images, folders of images, video files (none: the shipped sample image)")
    p.add_argument("--cam", type=_camera_index, metavar="N", help="read webcam N instead of paths (Ctrl-C stops)")
    p.add_argument("--model", help="'accurate' (default, 128x128), 'fast' (64x64) or a head-pose .tflite path")
    p.add_argument("--detector", default="short", help="'short' (default), 'full' (small faces) or a .tflite")
    p.add_argument("--threads", type=_positive_int, default=2, help="interpreter threads")
    p.add_argument(
        "--jobs", type=_positive_int, default=1, help="spread the inputs over N processes (rows stay in input order)"
    )
    p.add_argument("--max-faces", type=_positive_int, help="at most N faces per image/frame, best detector score first")
    p.add_argument("--min-score", type=_positive_float, default=0.5, help="lowest detector confidence, in (0, 1)")
    p.add_argument("--json", metavar="FILE", help="write faces and per-input reports as JSON ('-': stdout)")
    p.add_argument("--csv", metavar="FILE", help="write faces as CSV ('-': stdout)")
    p.add_argument("--output", metavar="DIR|FILE", help="annotated copies: a folder, or one image/video file")
    p.add_argument("--draw", choices=("axes", "cube", "both"), default="axes", help="what to draw at each face")
    p.add_argument("--smooth", action="store_true", help="video: One-Euro filter on each face's rotation and box")
    p.add_argument("--smooth-cutoff", type=_positive_float, default=1.0, help="One-Euro cutoff at rest, Hz")
    p.add_argument("--smooth-beta", type=_non_negative_float, default=0.02, help="cutoff increase per deg/s")
    p.add_argument("--max-frames", type=_positive_int, help="stop each video (or the webcam) after N frames")
    p.add_argument("--show", action="store_true", help="show video frames in a window (OpenCV with GUI only)")
    p.add_argument("--quiet", action="store_true", help="no table on the terminal")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _run_predict(args: argparse.Namespace) -> int:
    from qa_headpose.core.atomic import write_json
    from qa_headpose.inference import predict
    from qa_headpose.inference.video import SmoothConfig

    if args.json == "-" and args.csv == "-":
        raise UsageError("--json - and --csv - cannot both write to stdout")
    if args.cam is not None and args.paths:
        raise UsageError("give either paths or --cam, not both")
    if not args.min_score < 1:
        raise UsageError(f"--min-score must be in (0, 1). Received: {args.min_score}")
    for out in (args.json, args.csv):
        if out and out != "-":
            _check_output(Path(out), args.force)
    smooth = SmoothConfig(args.smooth_cutoff, args.smooth_beta) if args.smooth else None
    cfg = predict.PredictConfig(
        inputs=tuple(args.paths),
        camera=args.cam,
        model=args.model,
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
    info = sys.stderr if to_stdout else sys.stdout
    show_table = not (args.quiet or to_stdout)
    header_done: list[bool] = []

    def on_row(row: dict) -> None:
        if not show_table:
            return
        if not header_done:
            print(predict.format_header())
            header_done.append(True)
        print(predict.format_row(row), flush=True)

    def on_source(report) -> None:
        if report.error:
            print(f"qa-headpose predict: error: {report.error}", file=sys.stderr)
            return
        if report.faces == 0:
            print(f"qa-headpose predict: no face found in {report.name}", file=sys.stderr)
        if report.kind in ("video", "camera"):
            print(
                f"{report.name}: {report.frames} frames, a face in {report.frames_with_face}, {report.fps:.1f} FPS"
                + (f" -> {report.output}" if report.output else ""),
                file=info,
            )
        elif report.output:
            print(f"wrote {report.output}", file=info)

    summary = predict.run_predict(cfg, on_row=on_row, on_source=on_source)
    meta = {"version": __version__, "model": args.model or "accurate", "detector": args.detector}
    if args.json == "-":
        print(json.dumps(predict.summary_to_json(summary, meta), indent=2))
    elif args.json:
        write_json(args.json, predict.summary_to_json(summary, meta))
    if args.csv == "-":
        print(predict.rows_to_csv(summary.rows), end="")
    elif args.csv:
        predict.write_csv(summary.rows, args.csv)
    failed = summary.failed
    if failed and len(summary.sources) > 1:
        names = ", ".join(s.name for s in failed[:5]) + (", ..." if len(failed) > 5 else "")
        print(f"qa-headpose predict: {len(failed)} of {len(summary.sources)} inputs failed: {names}", file=sys.stderr)
    return summary.status


# ---------------------------------------------------------------- port-imagenet
def _add_port_imagenet(p: argparse.ArgumentParser) -> None:
    from qa_headpose.training import imagenet_cli

    imagenet_cli.add_arguments(p)


def _run_port_imagenet(args: argparse.Namespace) -> int:
    from qa_headpose.training import imagenet_cli

    return imagenet_cli.run(args)


# ---------------------------------------------------------------- serve
def _add_serve(p: argparse.ArgumentParser) -> None:
    from qa_headpose.serve import command

    command.add_arguments(p)


def _run_serve(args: argparse.Namespace) -> int:
    from qa_headpose.serve import command

    return command.run(args)


# ---------------------------------------------------------------- main
SUBCOMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "train": ("train float then QAT on real data", _add_train, _run_train),
    "export": ("export a run to full-int8, float32 and dynamic-range TFLite", _add_export, _run_export),
    "evaluate": ("per-angle MAE of a .tflite or Keras model on a dataset", _add_evaluate, _run_evaluate),
    "data": ("dataset tools: crop cache, pseudo-labels, FSA-Net download", _add_data, _run_data),
    "port-imagenet": (
        "port torchvision's ImageNet MobileNetV2 into a Keras backbone .h5 (offline)",
        _add_port_imagenet,
        _run_port_imagenet,
    ),
    "predict": ("head pose of every face in images, folders, videos or a webcam", _add_predict, _run_predict),
    "benchmark": (
        "latency, throughput, size, memory and MAE of every model and runtime",
        _add_benchmark,
        _run_benchmark,
    ),
    "export-onnx": ("export a run to float and int8 (QDQ) ONNX", _add_export_onnx, _run_export_onnx),
    "serve": ("HTTP API and live webcam page (pip install -e .[serve])", _add_serve, _run_serve),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``qa-headpose`` with all subcommands."""
    parser = _ArgumentParser(prog="qa-headpose", description="Head pose (yaw, pitch, roll) with an int8 MobileNetV2.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (help_text, add, _) in SUBCOMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``qa-headpose``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_command(args.command, lambda: SUBCOMMANDS[args.command][2](args))


def run_command(name: str, call: Callable[[], int]) -> int:
    """Runs a subcommand, turning expected errors into one line on stderr and exit code 2."""
    from qa_headpose.core.errors import DataError, ModelError

    try:
        return call()
    except (
        UsageError,
        DataError,
        ModelError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
        ValueError,
        ImportError,
    ) as exc:
        print(f"qa-headpose {name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"qa-headpose {name}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"qa-headpose {name}: error: out of memory", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("QA_HEADPOSE_TRACEBACK"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"qa-headpose {name}: internal error: {type(exc).__name__}: {first} "
            "(please report it; QA_HEADPOSE_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def train_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose train``."""
    return main(["train", *(sys.argv[1:] if argv is None else argv)])


def export_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose export`` (also ``python export_tflite.py``)."""
    return main(["export", *(sys.argv[1:] if argv is None else argv)])


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose benchmark`` (also ``python benchmark_tflite.py``)."""
    return main(["benchmark", *(sys.argv[1:] if argv is None else argv)])


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose evaluate``."""
    return main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
