"""Training throughput: the tf.data input pipeline alone, a float and a QAT train step, and both together.

The input pipeline must never be what limits training. This module measures, in
images per second on this machine: the pipeline alone (`train.make_train_dataset`
iterated without a model), float and QAT ``Model.fit`` steps on a batch held in
memory, and optionally ``Model.fit`` on the real pipeline (what a training run sees). From
these it gives the pipeline/step ratio and the time of one epoch of a large set
(300W-LP: 122,450 faces in FSA-Net's preprocessed set).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import numpy as np

from qa_headpose.datasets.faceset import FaceSet
from qa_headpose.datasets.npz import fsanet_inner_box
from qa_headpose.training.config import AugmentConfig, ModelConfig

logger = logging.getLogger(__name__)

W300LP_FACES = 122_450


@dataclasses.dataclass
class PipelineBenchResult:
    """Images per second of the input pipeline, the train steps and ``fit``, and what follows from them.

    Fields:
        input_size, alpha, batch_size: the model and global batch measured.
        faces: number of faces the pipeline drew from; image_side: their stored side, pixels.
        cpu_count: CPUs this process may use; load_before/load_after: 1-minute load average
            around the measurement (other processes slow every number down).
        pipeline_img_s: `make_train_dataset` alone (decode-free: the cache holds uint8 crops).
        pipeline_cpu_ms_per_img: its CPU time per image, all threads (load-independent cost).
        float_step_img_s, qat_step_img_s: ``fit`` steps on one batch held in memory.
        float_fit_img_s, qat_fit_img_s: ``Model.fit`` on the real pipeline (None if skipped).
        ratio_float, ratio_qat: pipeline_img_s / step img/s (> 1: the step is the bottleneck).
        epoch_faces: faces of the epoch estimated; epoch_float_s, epoch_qat_s: its seconds here,
            from the fit throughput when measured, else from min(pipeline, step).
    """

    input_size: int
    alpha: float
    batch_size: int
    faces: int
    image_side: int
    cpu_count: int
    load_before: float
    load_after: float
    pipeline_img_s: float
    pipeline_cpu_ms_per_img: float
    float_step_img_s: float
    qat_step_img_s: float
    float_fit_img_s: float | None
    qat_fit_img_s: float | None
    ratio_float: float
    ratio_qat: float
    epoch_faces: int
    epoch_float_s: float
    epoch_qat_s: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


def make_random_faces(n: int = 1024, side: int = 64, seed: int = 0) -> FaceSet:
    """Random uint8 crops in the FSA-Net npz layout (what `data crop` caches), for timing only.

    Returns:
        ``n`` faces of ``side`` x ``side`` BGR noise with the FSA-Net inner box and poses
        uniform in +-60 degrees.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    poses = rng.uniform(-60, 60, (n, 3)).astype(np.float32)
    box = np.tile(fsanet_inner_box((side, side)), (n, 1))
    return FaceSet(list(images), box, poses, [f"random{i}" for i in range(n)])


def measure_pipeline(
    faces: FaceSet,
    size: int,
    batch_size: int,
    augment: AugmentConfig = AugmentConfig(),
    batches: int = 40,
    warmup: int = 5,
    seed: int = 0,
) -> tuple[float, float]:
    """Images per second and CPU milliseconds per image of `train.make_train_dataset`, without a model.

    Args:
        faces: the cached faces; size: model input side; batch_size: images per batch.
        augment: the augmentation (the default one of training).
        batches: timed batches, after ``warmup`` untimed ones (the AUTOTUNE ramp-up).
        seed: the pipeline seed.

    Returns:
        (images per second, CPU ms per image summed over all threads: the share of the
        machine the pipeline takes from the train step, independent of other load).
    """
    from qa_headpose.training.train import make_train_dataset, steps_per_epoch

    epochs = -(-(warmup + batches) // steps_per_epoch(len(faces), batch_size))
    iterator = iter(make_train_dataset(faces, size, batch_size, augment, seed, 0, epochs))
    for _ in range(warmup):
        next(iterator)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    images = batches * batch_size
    return images / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / images


def _compile(model) -> None:
    from qa_headpose.training._keras import keras
    from qa_headpose.training.train import ANGLE_METRICS

    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mae", metrics=ANGLE_METRICS)


def _fit_img_s(model, data, steps: int, batch_size: int) -> float:
    """Images per second of the second of two ``fit`` epochs of ``steps`` (the first one traces)."""
    from qa_headpose.training._keras import keras

    times: list[float] = []

    class _Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            times.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            times[-1] = time.perf_counter() - times[-1]

    model.fit(data, epochs=2, steps_per_epoch=steps, callbacks=[_Clock()], verbose=0)
    return steps * batch_size / times[1]


def measure_train_step(model, x: np.ndarray, y: np.ndarray, steps: int = 20) -> float:
    """Images per second of ``Model.fit`` steps on one batch held in memory (no input pipeline).

    Args:
        model: a compiled model; x: float32 (batch, S, S, 3) pixels; y: float32 (batch, 3) degrees.
        steps: timed steps (after as many untimed ones, which include the tracing).

    Returns:
        Images per second.
    """
    from qa_headpose.training._keras import tf

    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    return _fit_img_s(model, data, steps, len(x))


def measure_fit(
    model, faces: FaceSet, batch_size: int, augment: AugmentConfig = AugmentConfig(), steps: int = 20, seed: int = 0
) -> float:
    """Images per second of ``Model.fit`` on the training pipeline (what a training run sees).

    Timed like `measure_train_step`, so the two differ only by the input.
    """
    from qa_headpose.training.train import make_distributed_input, steps_per_epoch

    size = int(model.input_shape[1])
    epochs = -(-2 * steps // steps_per_epoch(len(faces), batch_size))  # batches for the two timed epochs
    data = make_distributed_input(faces, size, batch_size, augment, seed, 0, epochs)
    return _fit_img_s(model, data, steps, batch_size)


def run_pipeline_bench(
    faces: FaceSet,
    model_cfg: ModelConfig = ModelConfig(input_size=64, alpha=1.0),
    batch_size: int = 64,
    augment: AugmentConfig = AugmentConfig(),
    steps: int = 20,
    pipeline_batches: int = 40,
    fit: bool = True,
    epoch_faces: int = W300LP_FACES,
) -> PipelineBenchResult:
    """Measures the pipeline, the float and QAT steps (and ``fit``) and estimates one large epoch.

    Args:
        faces: the cached training faces (e.g. `make_random_faces` or an FSA-Net npz).
        model_cfg: the model timed (random init).
        batch_size: the global batch.
        augment: the training augmentation.
        steps: timed train steps per measurement (after as many untimed ones).
        pipeline_batches: timed batches of the pipeline-only measurement.
        fit: also time ``Model.fit`` on the real pipeline (2 x ``steps`` steps per model).
        epoch_faces: faces of the epoch whose duration is estimated.

    Returns:
        The `PipelineBenchResult`.
    """
    from qa_headpose.training.model import build_model
    from qa_headpose.training.qat import make_qat_model
    from qa_headpose.training.train import make_train_dataset

    load_before = os.getloadavg()[0]
    size = model_cfg.input_size
    pipeline, pipeline_cpu_ms = measure_pipeline(faces, size, batch_size, augment, pipeline_batches, warmup=5)
    logger.info("pipeline: %.0f img/s, %.2f CPU ms/img", pipeline, pipeline_cpu_ms)
    x, y = next(iter(make_train_dataset(faces, size, batch_size, augment, 0, 0, 1)))
    x, y = x.numpy(), y.numpy()

    float_model = build_model(dataclasses.replace(model_cfg, backbone_weights=None))
    qat_model = make_qat_model(float_model)
    measured = {}
    for name, model in (("float", float_model), ("qat", qat_model)):
        _compile(model)
        # Step and fit back to back: other processes' load drifts over minutes.
        measured[name, "step"] = measure_train_step(model, x, y, steps)
        measured[name, "fit"] = measure_fit(model, faces, batch_size, augment, steps) if fit else None
        logger.info("%s: step %.0f, fit %s img/s", name, measured[name, "step"], measured[name, "fit"])
    float_step, float_fit = measured["float", "step"], measured["float", "fit"]
    qat_step, qat_fit = measured["qat", "step"], measured["qat", "fit"]

    def epoch_s(step: float, fitted: float | None) -> float:
        return epoch_faces / (fitted if fitted else min(step, pipeline))

    return PipelineBenchResult(
        input_size=size,
        alpha=model_cfg.alpha,
        batch_size=batch_size,
        faces=len(faces),
        image_side=int(faces.images[0].shape[0]),
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        pipeline_img_s=round(pipeline, 1),
        pipeline_cpu_ms_per_img=round(pipeline_cpu_ms, 3),
        float_step_img_s=round(float_step, 1),
        qat_step_img_s=round(qat_step, 1),
        float_fit_img_s=None if float_fit is None else round(float_fit, 1),
        qat_fit_img_s=None if qat_fit is None else round(qat_fit, 1),
        ratio_float=round(pipeline / float_step, 2),
        ratio_qat=round(pipeline / qat_step, 2),
        epoch_faces=epoch_faces,
        epoch_float_s=round(epoch_s(float_step, float_fit), 1),
        epoch_qat_s=round(epoch_s(qat_step, qat_fit), 1),
    )


def format_summary(r: PipelineBenchResult) -> str:
    """One line (timm style) with every throughput, the ratios and the epoch estimate."""
    fit = ""
    if r.float_fit_img_s is not None:
        fit = f" | fit on the pipeline: float {r.float_fit_img_s:.0f}, QAT {r.qat_fit_img_s:.0f} img/s"
    return (
        f"{r.input_size}x{r.input_size} alpha {r.alpha:g} batch {r.batch_size}, {r.cpu_count} CPUs "
        f"(load {r.load_before:.1f} -> {r.load_after:.1f}): pipeline {r.pipeline_img_s:.0f} img/s "
        f"({r.pipeline_cpu_ms_per_img:.2f} CPU ms/img) | "
        f"step: float {r.float_step_img_s:.0f}, QAT {r.qat_step_img_s:.0f} img/s | "
        f"pipeline/step: float {r.ratio_float:.1f}x, QAT {r.ratio_qat:.1f}x{fit} | "
        f"one {r.epoch_faces}-face epoch: float {r.epoch_float_s / 60:.1f} min, QAT {r.epoch_qat_s / 60:.1f} min"
    )
