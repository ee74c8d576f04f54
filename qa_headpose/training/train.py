"""Float and quantization-aware training with checkpoints, resume, CSV logs and model choice on val.

Each phase writes into its own folder: ``ckpt/`` (model + optimizer + epoch, every
epoch, for ``resume``), ``log.csv`` (loss and per-angle val MAE per epoch) and
``best.weights.h5`` (lowest val MAE so far, written atomically).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import atomic_path, write_bytes
from qa_headpose.datasets.faceset import FaceSet
from qa_headpose.training._keras import keras, tf
from qa_headpose.training.augment import augment_face
from qa_headpose.training.config import AugmentConfig, QATConfig, TrainConfig
from qa_headpose.training.model import angle_bin_width, with_bin_logits

logger = logging.getLogger(__name__)


def make_train_dataset(
    faces: FaceSet,
    size: int,
    batch_size: int,
    augment: AugmentConfig,
    seed: int,
    start_epoch: int,
    epochs: int,
    num_shards: int = 1,
    shard_index: int = 0,
) -> tf.data.Dataset:
    """Augmented batches for epochs ``start_epoch .. epochs-1``, deterministic for a seed.

    Each epoch is a fresh permutation (seeded by (seed, epoch)) cut to whole global
    batches of ``batch_size``; each sample's augmentation is seeded by (seed, epoch,
    index), so a resumed run sees exactly the batches an uninterrupted one would.
    With ``num_shards`` input pipelines (one per worker), shard ``i`` keeps every
    ``num_shards``-th sample, before the augmentation, and batches
    ``batch_size // num_shards``: the shards' batches of a step together are the
    global batch a single pipeline would have produced.

    Returns:
        A dataset of (float32 (batch, size, size, 3) pixels, float32 (batch, 3) degrees),
        batch = ``batch_size // num_shards``.
    """
    if batch_size % num_shards or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"batch_size must be a multiple of num_shards and 0 <= shard_index < num_shards. "
            f"Received: batch_size={batch_size}, num_shards={num_shards}, shard_index={shard_index}"
        )
    n = len(faces)
    steps = steps_per_epoch(n, batch_size)
    pairs = np.concatenate(
        [
            np.stack(
                [np.full(steps * batch_size, e), np.random.default_rng([seed, e]).permutation(n)[: steps * batch_size]],
                1,
            )
            for e in range(start_epoch, epochs)
        ]
        or [np.zeros((0, 2), np.int64)]
    ).astype(np.int64)[shard_index::num_shards]

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
    ds = ds.batch(batch_size // num_shards, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Sharded above, before the augmentation; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def make_distributed_input(
    faces: FaceSet,
    size: int,
    batch_size: int,
    augment: AugmentConfig,
    seed: int,
    start_epoch: int,
    epochs: int,
    teacher: keras.Model | None = None,
    distill: float = 0.0,
):
    """`make_train_dataset` as a Keras ``DatasetCreator``: one shard per input pipeline (worker).

    ``batch_size`` is the global batch; each replica gets ``batch_size / replicas``. With a
    ``teacher``, each target is ``(1 - distill) * label + distill * teacher(crop)``, the
    teacher seeing the augmented crop the model sees.

    Returns:
        A ``keras.utils.experimental.DatasetCreator`` for ``Model.fit`` under a strategy.
    """

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = context.get_per_replica_batch_size(batch_size)
        local = batch_size // context.num_input_pipelines
        shards = (context.num_input_pipelines, context.input_pipeline_id)
        ds = make_train_dataset(faces, size, batch_size, augment, seed, start_epoch, epochs, *shards)
        if teacher is not None and distill:
            ds = ds.map(lambda x, y: (x, (1.0 - distill) * y + distill * teacher(x, training=False)))
        # A worker with several local replicas hands them per-replica slices of its batch.
        return ds.unbatch().batch(per_replica, drop_remainder=True) if per_replica != local else ds

    return keras.utils.experimental.DatasetCreator(dataset_fn)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Whole batches per epoch (at least one; a smaller set is then a smaller batch)."""
    if n < 1:
        raise ValueError("The training set is empty.")
    return max(1, n // batch_size)


def warmup_steps(epochs: int, steps: int) -> int:
    """Two epochs of warm-up for long runs; a tenth of a short run (a fine-tune of a few epochs)."""
    return min(2, epochs) * steps if epochs >= 10 else max(1, epochs * steps // 10)


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
# Weight of the bins' cross-entropy (nats) beside the L1 (degrees) of a binned head: both are a few units.
BIN_CE_WEIGHT = 1.0


def binned_pose_loss(bins: int, ce_weight: float = BIN_CE_WEIGHT) -> Callable:
    """L1 on the expected angles plus the cross-entropy of each label's bin, per face (HopeNet, WHENet).

    Reads the output of `model.with_bin_logits`: (batch, 3 + 3 * bins), the degrees then the bin scores.
    """
    width = angle_bin_width(bins)

    def loss(y_true, y_pred):
        l1 = tf.reduce_mean(tf.abs(y_true - y_pred[:, :3]), axis=-1)
        logits = tf.reshape(y_pred[:, 3:], (-1, 3, bins))
        label_bin = tf.cast(
            tf.clip_by_value(tf.floor((y_true + angles.ANGLE_LIMIT_DEG) / width), 0, bins - 1), tf.int32
        )
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label_bin, logits=logits)
        return l1 + ce_weight * tf.reduce_mean(ce, axis=-1)

    loss.__name__ = "l1_plus_bin_ce"
    return loss


def val_mae_of(logs: dict) -> float | None:
    """The mean val MAE over the three angles of a Keras epoch log (the criterion that picks the weights)."""
    maes = [logs.get(f"val_{name}_mae") for name in angles.ANGLE_ORDER]
    return float(np.mean(maes)) if None not in maes else logs.get("val_loss")


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves the resumable checkpoint every epoch and the best-on-val weights (of ``pose_model``) atomically."""

    def __init__(
        self,
        manager: tf.train.CheckpointManager,
        epoch_var: tf.Variable,
        best_path: Path,
        best: float,
        pose_model: keras.Model,
    ) -> None:
        super().__init__()
        self.manager, self.epoch_var, self.best_path, self.best = manager, epoch_var, best_path, best
        self.pose_model = pose_model

    def on_epoch_end(self, epoch, logs=None):
        val = val_mae_of(logs or {})
        if val is not None and val < self.best:
            self.best = float(val)
            save_weights_atomic(self.pose_model, self.best_path)
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
        write_bytes(self.manager.directory + "/best_val.txt", f"{self.best}\n".encode())


def save_weights_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """``save_weights`` (HDF5) through `core.atomic.atomic_path`."""
    with atomic_path(path) as tmp:
        model.save_weights(str(tmp))


def fit_phase(
    model: keras.Model,
    train: FaceSet,
    val_x: np.ndarray,
    val_y: np.ndarray,
    cfg: TrainConfig | QATConfig,
    workdir: str | os.PathLike,
    resume: bool = False,
    verbose: int = 2,
    strategy: tf.distribute.Strategy | None = None,
    restore_dir: str | os.PathLike | None = None,
    teacher: keras.Model | None = None,
) -> dict[str, float]:
    """Trains one phase (float or QAT) and leaves ``best.weights.h5`` in ``workdir``.

    A run killed at any point (even SIGKILL during a save) resumes from its last
    complete checkpoint: `tf.train.CheckpointManager` writes the checkpoint files
    first and its ``checkpoint`` index last (atomically), the best weights go
    through a temporary file and a rename, and ``log.csv`` is cut back to the
    epochs before the restored one, so it ends with exactly ``cfg.epochs`` rows.

    Args:
        model: the float or QAT model; a binned one trains through its `model.with_bin_logits` view
            (compiled here), whose extra output only the loss reads.
        train: the training faces (augmented on the fly).
        val_x, val_y: val crops float32 (n, S, S, 3) and labels (n, 3) degrees; the only
            data used to choose the weights.
        cfg: the phase's config.
        workdir: folder for ckpt/, log.csv and best.weights.h5.
        resume: continue from the last checkpoint in ``workdir`` if there is one.
        verbose: Keras verbosity (1 = progress bar, 2 = a line per epoch, 0 = silent).
        strategy: the `tf.distribute` strategy ``model`` was built under (None: the
            default one); the optimizer is built in its scope and ``cfg.batch_size``
            is the global batch, split across its replicas.
        restore_dir: with ``resume``, restore from this folder's checkpoint if it has
            one (a non-chief worker writes elsewhere but resumes from the chief's).
        teacher: the model whose outputs a QAT config's ``distill`` mixes into the targets
            (the float model QAT starts from); the val MAE is always against the labels.

    Returns:
        dict with ``best_val_mae`` (degrees) and ``epochs_run``.

    Raises:
        ValueError: for a ``distill`` config without a ``teacher``.
    """
    distill = getattr(cfg, "distill", 0.0)
    if distill and teacher is None:
        raise ValueError("distill > 0 needs the teacher model (the float model QAT starts from)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(workdir)
    strategy = strategy or tf.distribute.get_strategy()
    size = int(model.input_shape[1])
    steps = steps_per_epoch(len(train), cfg.batch_size)
    with strategy.scope():
        schedule = WarmupCosine(cfg.learning_rate, warmup_steps(cfg.epochs, steps), cfg.epochs * steps)
        weight_decay = getattr(cfg, "weight_decay", 0.0)
        if weight_decay:
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
        else:
            optimizer = keras.optimizers.Adam(schedule)
        fitted = with_bin_logits(model)
        bins = (int(fitted.output_shape[-1]) - 3) // 3
        fitted.compile(optimizer=optimizer, loss=binned_pose_loss(bins) if bins else "mae", metrics=ANGLE_METRICS)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)

    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, str(workdir / "ckpt"), max_to_keep=2)
    best_path = workdir / "best.weights.h5"
    start, best = 0, float("inf")
    source = manager.latest_checkpoint
    if resume and restore_dir is not None:
        source = tf.train.latest_checkpoint(str(Path(restore_dir) / "ckpt")) or source
    if resume and source:
        ckpt.restore(source).expect_partial()
        start = int(epoch_var.numpy())
        best_file = Path(source).parent / "best_val.txt"
        if best_file.is_file():
            best = float(best_file.read_text())
        logger.info("Resuming %s at epoch %d from %s (best val MAE %.3f)", workdir, start, source, best)
    elif manager.latest_checkpoint:
        raise FileExistsError(f"{workdir} already holds a checkpoint: pass resume=True (--resume) or use a new folder")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        from qa_headpose.training.distribute import check_same_on_all_workers

        check_same_on_all_workers(strategy, start, "epoch to resume from")
    if start >= cfg.epochs:
        return {"best_val_mae": best, "epochs_run": 0}

    logger.info(
        "%s phase: %d epoch(s) of %d steps of %d faces; the first step builds the graph",
        workdir.name,
        cfg.epochs - start,
        steps,
        cfg.batch_size,
    )
    ds = make_distributed_input(train, size, cfg.batch_size, cfg.augment, cfg.seed, start, cfg.epochs, teacher, distill)
    log_path = workdir / "log.csv"
    if start > 0:
        truncate_log(log_path, start)
    callbacks = [  # the log row before the checkpoint: a kill between them leaves a row that truncate_log drops
        keras.callbacks.CSVLogger(str(log_path), append=start > 0),
        _EpochCheckpoint(manager, epoch_var, best_path, best, model),
    ]
    fitted.fit(
        ds,
        epochs=cfg.epochs,
        initial_epoch=start,
        steps_per_epoch=steps,
        validation_data=(val_x, val_y),
        validation_batch_size=256,
        callbacks=callbacks,
        verbose=verbose,
    )
    return {"best_val_mae": callbacks[1].best, "epochs_run": cfg.epochs - start}


def truncate_log(path: str | os.PathLike, epochs: int) -> None:
    """Keeps the header and the rows of epochs ``< epochs`` of a CSV log (atomically); no file, no-op."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    epoch_of = [line.split(",", 1)[0].strip() for line in lines]
    kept = lines[:1] + [line for line, e in zip(lines[1:], epoch_of[1:]) if e.isdigit() and int(e) < epochs]
    if kept != lines:
        write_bytes(path, "".join(kept).encode())


# core.atomic's ".<base>.tmp<pid>-<thread><suffixes>", the names of earlier versions (".tmp<pid>.<name>",
# ".<name>.tmp<pid>"), TF's "checkpoint.tmp<hex>".
_TEMP_NAME = re.compile(r"\.[^.]+\.tmp\d+-\d+(\..+)?|\.tmp\d+\..+|.+\.tmp[0-9a-f]*")


def remove_stale_temps(workdir: str | os.PathLike) -> list[Path]:
    """Deletes what a killed save leaves in a phase folder: our ``.tmp*`` files and TF's ``ckpt-N_temp/``.

    No loader reads these names (the best weights and the checkpoint index are only
    ever renamed into place), so this is tidying, not repair.

    Returns:
        The removed paths.
    """
    import shutil

    workdir = Path(workdir)
    removed = []
    for folder in (workdir, workdir / "ckpt"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and _TEMP_NAME.fullmatch(path.name):
                path.unlink()
            elif path.is_dir() and path.name.endswith("_temp"):
                shutil.rmtree(path)
            else:
                continue
            removed.append(path)
    if removed:
        logger.info("Removed %d leftovers of an interrupted save in %s", len(removed), workdir)
    return removed


def predict_keras(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Batched Keras inference without the per-call overhead of ``model(x)``; (n, 3) degrees."""
    out = [model.predict_on_batch(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)
