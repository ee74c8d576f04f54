"""The train -> export -> evaluate steps behind the CLI, on run folders.

A run folder holds ``config.json`` (model, train, qat and data settings),
``float/`` and ``qat/`` (checkpoints, logs, ``best.weights.h5``) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import write_json
from qa_headpose.core.errors import DataError
from qa_headpose.datasets.faceset import FaceSet, filter_protocol
from qa_headpose.datasets.load import concat_faces, load_filtered
from qa_headpose.datasets.splits import split_train_val
from qa_headpose.training.config import (
    ExportConfig,
    ExtraDataConfig,
    ModelConfig,
    QATConfig,
    TrainConfig,
    from_dict,
    to_dict,
)

logger = logging.getLogger(__name__)

RUN_CONFIG = "config.json"
PHASES = ("float", "qat")


@dataclasses.dataclass
class PreparedData:
    """Train and val faces after the protocol filter, with what was kept and dropped."""

    train: FaceSet
    val: FaceSet
    report: dict[str, Any]


def prepare_data(
    data: list[str | os.PathLike],
    val_data: list[str | os.PathLike] | None = None,
    split: str | None = "aflw2000_val",
    limit_deg: float | None = angles.ANGLE_LIMIT_DEG,
    extra: ExtraDataConfig | None = None,
) -> PreparedData:
    """Loads the training data and its val split (a separate set, or the committed/hash split).

    ``extra`` faces join the train split only, after the split, with the labelled
    train faces repeated ``extra.labelled_repeat`` times; faces without all three
    labels (NaN) are dropped by the protocol filter and counted.

    Raises:
        DataError: if a path cannot be read or a split ends up empty.
    """
    faces, counts = load_filtered(data, limit_deg)
    if val_data:
        train, (val, val_counts) = faces, load_filtered(val_data, limit_deg)
        report = {"train": counts, "val": val_counts, "split": "separate val data"}
    else:
        train, val = split_train_val(faces, split)
        report = {"filter": counts, "split": split or "sha1 hash of file name, 15% val"}
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"Empty split: {len(train)} train and {len(val)} val faces (split={split!r})")
    if extra is not None:
        train, report["extra"] = add_extra_faces(train, extra, limit_deg)
    report.update({"train_faces": len(train), "val_faces": len(val), "limit_deg": limit_deg})
    report["data"] = [str(p) for p in data]
    report["val_data"] = [str(p) for p in val_data or []]
    return PreparedData(train, val, report)


def add_extra_faces(
    train: FaceSet, extra: ExtraDataConfig, limit_deg: float | None = angles.ANGLE_LIMIT_DEG
) -> tuple[FaceSet, dict[str, Any]]:
    """The labelled train faces (repeated) plus the extra faces with full labels; and a report.

    With ``labels="both"`` each extra face comes twice, once with the teacher's label and
    once with AFLW's own where AFLW has all three angles.
    """
    from qa_headpose.datasets.aflw_extra import label_mask, load_aflw_extra, read_labels

    labels = extra.pseudo_labels if extra.labels in ("pseudo", "both") else extra.labels
    faces = load_aflw_extra(
        extra.path, labels, max_mirror_deg=extra.max_mirror_deg, max_gt_yaw_gap_deg=extra.max_gt_yaw_gap_deg
    )
    if extra.labels == "both":
        table = read_labels(extra.path)
        aflw = dict(zip(table.names, table.aflw_pose))
        own = FaceSet(faces.images, faces.boxes, np.stack([aflw[n] for n in faces.names]), faces.names)
        faces = concat_faces([faces, own])
    complete = label_mask(faces.poses).all(1)
    report = {"path": str(extra.path), "labels": extra.labels, "faces": len(faces)}
    report["without_labels"] = int((~complete).sum())
    faces = faces.subset(complete)
    if limit_deg is not None:
        faces, report["dropped_by_filter"] = filter_protocol(faces, limit_deg)
    if len(faces) == 0:
        raise DataError(f"No extra face with all three labels in {extra.path} (labels={extra.labels!r})")
    report.update({"used": len(faces), "labelled_repeat": extra.labelled_repeat, "config": dataclasses.asdict(extra)})
    return concat_faces([train] * extra.labelled_repeat + [faces]), report


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a run folder, with config objects under model/train/qat."""
    import json

    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"Not a training run folder (no {RUN_CONFIG}): {run_dir}")
    try:
        raw = json.loads(path.read_text())
        return {
            **raw,
            "model": from_dict(ModelConfig, raw["model"]),
            "train": from_dict(TrainConfig, raw["train"]),
            "qat": from_dict(QATConfig, raw["qat"]),
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"Unreadable {path}: {exc}") from None


def train_run(
    run_dir: str | os.PathLike,
    prepared: PreparedData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    qat_cfg: QATConfig,
    resume: bool = False,
    verbose: int = 2,
    strategy: Any = "default",
) -> dict[str, Any]:
    """Float phase, then QAT from the best float weights; writes the run folder.

    Args:
        strategy: "default", "mirrored", "multiworker" (see `qa_headpose.training.distribute`)
            or a `tf.distribute.Strategy`. The float and QAT models and their
            optimizers are built in its scope; the batch sizes are global batches.
            Under "multiworker" only the chief writes ``run_dir``; the other workers
            write ``run_dir/.worker<i>`` (deleted at the end) and resume from the
            chief's checkpoints when ``run_dir`` is shared, else from their own.

    Returns:
        The summary (also ``summary.json``): val MAE per angle of the float and QAT
        Keras models, epochs and wall time per phase.
    """
    import shutil

    logger.info("starting TensorFlow")
    from qa_headpose.training import distribute
    from qa_headpose.training.model import build_model
    from qa_headpose.training.qat import build_qat_model, make_qat_model
    from qa_headpose.training.train import fit_phase, save_weights_atomic

    if isinstance(strategy, str):  # first: multiworker must come before any TensorFlow op
        strategy = distribute.make_strategy(strategy)
    run_dir = Path(run_dir)
    own_dir = distribute.worker_dir(run_dir, strategy)
    own_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": to_dict(model_cfg),
        "train": to_dict(train_cfg),
        "qat": to_dict(qat_cfg),
        "data": prepared.report,
    }
    if (run_dir / RUN_CONFIG).exists() and resume:
        previous = read_run_config(run_dir)
        if previous["model"] != model_cfg:
            raise ValueError(f"--resume with another model config than {run_dir / RUN_CONFIG}")
    write_json(own_dir / RUN_CONFIG, config)

    size = model_cfg.input_size
    val_x = prepared.val.crops(size).astype(np.float32)
    val_y = prepared.val.poses
    summary: dict[str, Any] = {"data": prepared.report, "replicas": strategy.num_replicas_in_sync}

    start = time.perf_counter()
    logger.info("float phase: building MobileNetV2 (%dx%d, alpha %g)", size, size, model_cfg.alpha)
    with strategy.scope():
        model = build_model(model_cfg)
        if train_cfg.init_weights:
            model.set_weights(_float_model(model_cfg, Path(train_cfg.init_weights)).get_weights())
    float_dir = own_dir / "float"
    if train_cfg.epochs == 0:  # QAT straight from the start weights: they are the float phase's best
        start_weights = float_dir / "best.weights.h5"
        if start_weights.exists() and not resume:  # refused before it replaces what an earlier run quantized
            raise FileExistsError(f"{run_dir} already holds a training run: pass resume=True (--resume)")
        float_dir.mkdir(parents=True, exist_ok=True)
        save_weights_atomic(model, start_weights)
        done = {"best_val_mae": None, "epochs_run": 0}
    else:
        done = fit_phase(
            model, prepared.train, val_x, val_y, train_cfg, float_dir, resume, verbose, strategy, run_dir / "float"
        )
    logger.info("float phase: scoring the best weights on %d val faces", len(val_x))
    best_float = _float_model(model_cfg, _best_weights(float_dir, run_dir / "float"))
    # set_weights, not load_weights: h5 loading into a multi-worker model's synchronised variables fails.
    model.set_weights(best_float.get_weights())
    seconds = round(time.perf_counter() - start, 1)
    summary["float"] = {**done, "seconds": seconds, **_val_mae(best_float, val_x, val_y)}

    start = time.perf_counter()
    logger.info("QAT phase: wrapping the model for quantization-aware training")
    with strategy.scope():
        qat_model = make_qat_model(model)
    qat_dir = own_dir / "qat"
    teacher = best_float if qat_cfg.distill else None
    done = fit_phase(
        qat_model, prepared.train, val_x, val_y, qat_cfg, qat_dir, resume, verbose, strategy, run_dir / "qat", teacher
    )
    logger.info("QAT phase: scoring the best weights on %d val faces", len(val_x))
    qat_model = build_qat_model(model_cfg, str(_best_weights(qat_dir, run_dir / "qat")))
    summary["qat"] = {**done, "seconds": round(time.perf_counter() - start, 1), **_val_mae(qat_model, val_x, val_y)}
    write_json(own_dir / "summary.json", summary)
    if own_dir != run_dir:
        shutil.rmtree(own_dir, ignore_errors=True)
    return summary


def _best_weights(own_phase_dir: Path, run_phase_dir: Path) -> Path:
    """The chief's best weights when this process sees them (shared storage), else its own.

    Every worker then starts QAT from the same weights, even one resumed from the chief's checkpoint.
    """
    shared = run_phase_dir / "best.weights.h5"
    return shared if shared.is_file() else own_phase_dir / "best.weights.h5"


def _float_model(cfg: ModelConfig, weights: Path):
    """A fresh float model (outside any strategy) with the given weights.

    A binned model may start from a regression model's weights file: everything but the head is copied from
    it, and the head starts fresh.
    """
    from qa_headpose.training.model import OUTPUT_NAME, build_model

    model = build_model(dataclasses.replace(cfg, backbone_weights=None))
    try:
        model.load_weights(str(weights))
    except ValueError as not_binned:
        if not cfg.angle_bins:
            raise
        source = build_model(dataclasses.replace(cfg, backbone_weights=None, angle_bins=0))
        try:
            source.load_weights(str(weights))
        except ValueError:
            raise not_binned from None  # neither head fits: the first error names the file's mismatch
        for layer in source.layers:
            if layer.weights and layer.name != OUTPUT_NAME:
                model.get_layer(layer.name).set_weights(layer.get_weights())
        logger.info(
            "%s is a regression model: its backbone is copied, the %d-bin head starts fresh", weights, cfg.angle_bins
        )
    return model


def _val_mae(model, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from qa_headpose.training.train import predict_keras

    return {"val": angles.mean_absolute_errors(predict_keras(model, x), y)}


def load_keras_from_run(run_dir: str | os.PathLike, phase: str = "qat"):
    """Rebuilds the float or QAT Keras model of a run folder with its best weights."""
    from qa_headpose.training.model import build_model
    from qa_headpose.training.qat import build_qat_model

    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}. Received: phase={phase!r}")
    cfg = read_run_config(run_dir)["model"]
    weights = Path(run_dir) / phase / "best.weights.h5"
    if not weights.is_file():
        raise FileNotFoundError(f"No trained {phase} weights in {run_dir} ({weights} is missing)")
    if phase == "qat":
        return build_qat_model(cfg, str(weights))
    model = build_model(dataclasses.replace(cfg, backbone_weights=None))
    model.load_weights(str(weights))
    return model


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    calibration: FaceSet | None,
    cfg: ExportConfig = ExportConfig(),
    variants: tuple[str, ...] = ("int8", "float32", "dynamic"),
    name: str = "headpose",
) -> dict[str, dict[str, Any]]:
    """Writes ``<name>_<variant>.tflite`` (+ .json) for each variant from a run folder.

    Args:
        run_dir: a trained run folder.
        out_dir: where the models go (created).
        calibration: training faces for the representative dataset (cropped, not
            augmented); needed for "int8" only.
        cfg: export settings.
        variants: any of "int8" (from the QAT model), "float32", "dynamic" (from the float model).
        name: file name prefix.

    Returns:
        variant -> metadata written beside the model.
    """
    from qa_headpose.training.export import (
        convert_to_dynamic_range_tflite,
        convert_to_float_tflite,
        convert_to_int8_tflite,
        save_tflite,
    )

    unknown = set(variants) - {"int8", "float32", "dynamic"}
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; choose from int8, float32, dynamic")
    run = read_run_config(run_dir)
    size = run["model"].input_size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {
        "model_config": to_dict(run["model"]),
        "train_config": to_dict(run["train"]),
        "qat_config": to_dict(run["qat"]),
    }
    written = {}
    for variant in variants:
        start = time.perf_counter()
        logger.info("%s: loading the %s model and converting it", variant, "QAT" if variant == "int8" else "float")
        if variant == "int8":
            if calibration is None or len(calibration) == 0:
                raise ValueError("The int8 export needs calibration faces (the training split)")
            rng = np.random.default_rng(0)
            pick = rng.permutation(len(calibration))[: cfg.num_calibration]
            calib = calibration.subset(pick).crops(size).astype(np.float32)
            payload = convert_to_int8_tflite(load_keras_from_run(run_dir, "qat"), calib, cfg)
        else:
            model = load_keras_from_run(run_dir, "float")
            convert = convert_to_float_tflite if variant == "float32" else convert_to_dynamic_range_tflite
            payload = convert(model)
        meta = save_tflite(
            payload, out_dir / f"{name}_{variant}.tflite", variant, {**extra, "export_config": to_dict(cfg)}
        )
        meta["convert_seconds"] = round(time.perf_counter() - start, 1)
        written[variant] = meta
    return written


def split_of(data_report: dict[str, Any]) -> str | None:
    """The committed val list a run's data report names, or None (hash or separate val data)."""
    split = data_report.get("split")
    return split if split and not split.startswith(("sha1", "separate")) else None


def run_train_faces(run: dict[str, Any]) -> FaceSet:
    """The train split of a run (its ``read_run_config``), as it was trained on: the int8 calibration crops."""
    data = run["data"]
    return prepare_data(data["data"], data.get("val_data") or None, split_of(data), data.get("limit_deg")).train
