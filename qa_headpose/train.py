"""Float and quantization-aware training with checkpoints, resume, CSV logs and model choice on val.

Each phase writes into its own folder: ``ckpt/`` (model + optimizer + epoch, every
epoch, for ``resume``), ``log.csv`` (loss and per-angle val MAE per epoch) and
``best.weights.h5`` (lowest val MAE so far, written atomically).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from qa_headpose import angles
from qa_headpose._keras import keras, tf
from qa_headpose.augment import augment_face
from qa_headpose.config import AugmentConfig, QATConfig, TrainConfig
from qa_headpose.data import FaceSet

logger = logging.getLogger(__name__)


def make_train_dataset(
    faces: FaceSet,
    size: int,
    batch_size: int,
    augment: AugmentConfig,
    seed: int,
    start_epoch: int,
    epochs: int,
) -> tf.data.Dataset:
    """Augmented batches for epochs ``start_epoch .. epochs-1``, deterministic for a seed.

    Each epoch is a fresh permutation (seeded by (seed, epoch)) cut to whole batches;
    each sample's augmentation is seeded by (seed, epoch, index), so a resumed run
    sees exactly the batches an uninterrupted one would.

    Returns:
        A dataset of (float32 (batch, size, size, 3) pixels, float32 (batch, 3) degrees).
    """
    n = len(faces)
    steps = steps_per_epoch(n, batch_size)
    pairs = np.concatenate(
        [
            np.stack([np.full(steps * batch_size, e), np.random.default_rng([seed, e]).permutation(n)[: steps * batch_size]], 1)
            for e in range(start_epoch, epochs)
        ]
        or [np.zeros((0, 2), np.int64)]
    ).astype(np.int64)

    def _load(pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        epoch, index = int(pair[0]), int(pair[1])
        rng = np.random.default_rng([seed, epoch, index])
        crop, pose = augment_face(faces.images[index], faces.boxes[index], faces.poses[index], size, augment, rng)
        return crop.astype(np.float32), pose

    def _map(pair):
        x, y = tf.numpy_function(_load, [pair], (tf.float32, tf.float32), stateful=False)
        x.set_shape((size, size, 3))
        y.set_shape((3,))
        return x, y

    ds = tf.data.Dataset.from_tensor_slices(pairs)
    ds = ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Whole batches per epoch (at least one; a smaller set is then a smaller batch)."""
    if n < 1:
        raise ValueError("The training set is empty.")
    return max(1, n // batch_size)


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to the peak rate, then cosine decay to 1% of it."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int) -> None:
        self.peak, self.warmup_steps, self.total_steps = float(peak), int(warmup_steps), max(1, int(total_steps))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1) / max(1, self.warmup_steps)
        progress = tf.clip_by_value((step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps), 0.0, 1.0)
        cosine = self.peak * (0.01 + 0.99 * 0.5 * (1 + tf.cos(np.pi * progress)))
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def _angle_mae(i: int, name: str) -> Callable:
    def metric(y_true, y_pred):
        return tf.reduce_mean(tf.abs(y_true[:, i] - y_pred[:, i]))

    metric.__name__ = f"{name}_mae"
    return metric


ANGLE_METRICS = [_angle_mae(i, name) for i, name in enumerate(angles.ANGLE_ORDER)]


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves the resumable checkpoint every epoch and the best-on-val weights atomically."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch_var: tf.Variable, best_path: Path, best: float) -> None:
        super().__init__()
        self.manager, self.epoch_var, self.best_path, self.best = manager, epoch_var, best_path, best

    def on_epoch_end(self, epoch, logs=None):
        val = (logs or {}).get("val_loss")
        if val is not None and val < self.best:
            self.best = float(val)
            save_weights_atomic(self.model, self.best_path)
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
        best_file = self.manager.directory + "/best_val.txt"
        with open(best_file + ".tmp", "w") as f:
            f.write(f"{self.best}\n")
        os.replace(best_file + ".tmp", best_file)


def save_weights_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """``save_weights`` (HDF5) through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".tmp{os.getpid()}.{path.name}")
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def fit_phase(
    model: keras.Model,
    train: FaceSet,
    val_x: np.ndarray,
    val_y: np.ndarray,
    cfg: TrainConfig | QATConfig,
    workdir: str | os.PathLike,
    resume: bool = False,
    verbose: int = 2,
) -> dict[str, float]:
    """Trains one phase (float or QAT) and leaves ``best.weights.h5`` in ``workdir``.

    Args:
        model: the float or QAT model (compiled here).
        train: the training faces (augmented on the fly).
        val_x, val_y: val crops float32 (n, S, S, 3) and labels (n, 3) degrees; the only
            data used to choose the weights.
        cfg: the phase's config.
        workdir: folder for ckpt/, log.csv and best.weights.h5.
        resume: continue from the last checkpoint in ``workdir`` if there is one.
        verbose: Keras verbosity (1 = progress bar, 2 = a line per epoch, 0 = silent).

    Returns:
        dict with ``best_val_mae`` (degrees) and ``epochs_run``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    size = int(model.input_shape[1])
    steps = steps_per_epoch(len(train), cfg.batch_size)
    schedule = WarmupCosine(cfg.learning_rate, min(2, cfg.epochs) * steps, cfg.epochs * steps)
    weight_decay = getattr(cfg, "weight_decay", 0.0)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay) if weight_decay else keras.optimizers.Adam(schedule)
    model.compile(optimizer=optimizer, loss="mae", metrics=ANGLE_METRICS)

    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, str(workdir / "ckpt"), max_to_keep=2)
    best_path = workdir / "best.weights.h5"
    start, best = 0, float("inf")
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        start = int(epoch_var.numpy())
        best_file = Path(manager.directory) / "best_val.txt"
        if best_file.is_file():
            best = float(best_file.read_text())
        logger.info("Resuming %s at epoch %d (best val MAE %.3f)", workdir, start, best)
    elif manager.latest_checkpoint:
        raise FileExistsError(f"{workdir} already holds a checkpoint: pass resume=True (--resume) or use a new folder")
    if start >= cfg.epochs:
        return {"best_val_mae": best, "epochs_run": 0}

    ds = make_train_dataset(train, size, cfg.batch_size, cfg.augment, cfg.seed, start, cfg.epochs)
    callbacks = [
        _EpochCheckpoint(manager, epoch_var, best_path, best),
        keras.callbacks.CSVLogger(str(workdir / "log.csv"), append=start > 0),
    ]
    model.fit(
        ds,
        epochs=cfg.epochs,
        initial_epoch=start,
        steps_per_epoch=steps,
        validation_data=(val_x, val_y),
        validation_batch_size=256,
        callbacks=callbacks,
        verbose=verbose,
    )
    return {"best_val_mae": callbacks[0].best, "epochs_run": cfg.epochs - start}


def predict_keras(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Batched Keras inference without the per-call overhead of ``model(x)``; (n, 3) degrees."""
    out = [model.predict_on_batch(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)
