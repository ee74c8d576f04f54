"""Predictions and errors of a model on labelled faces: a ``.tflite`` (no TensorFlow) or a training run's Keras model.

The cheap checks come first (missing data, then a bad model), so a typo fails before any work.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.errors import DataError
from qa_headpose.datasets.faceset import FaceSet
from qa_headpose.datasets.load import load_filtered
from qa_headpose.datasets.splits import split_train_val
from qa_headpose.evaluation.bands import scored_mae


def predict_model(
    model_path: str | os.PathLike,
    x: np.ndarray,
    phase: str = "qat",
    num_threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
    mirror: bool = False,
) -> np.ndarray:
    """(n, 3) degrees from a .tflite file or a run folder's float/QAT Keras model.

    ``progress`` is called with (faces done, faces) after each batch. ``mirror``: each pose is the
    mean of the crop's and its mirror image's (`angles.average_with_mirror`); a .tflite runs both in
    one call (`TFLiteRunner.run`), so the model is loaded once either way.
    """
    path = Path(model_path)
    if path.suffix == ".tflite":
        from qa_headpose.inference.runtime import TFLiteRunner

        runner = TFLiteRunner(path, num_threads=num_threads)
        out = []
        for i in range(0, len(x), 64):
            out.append(runner(x[i : i + 64], mirror=mirror))
            if progress is not None:
                progress(min(i + 64, len(x)), len(x))
        return np.concatenate(out)
    from qa_headpose.training.train import predict_keras
    from qa_headpose.training.workflow import load_keras_from_run

    model = load_keras_from_run(path, phase)
    pred = predict_keras(model, x)
    if mirror:
        pred = angles.average_with_mirror(pred, predict_keras(model, np.ascontiguousarray(x[:, :, ::-1])))
    if progress is not None:
        progress(len(x), len(x))
    return pred


def model_input_size(model_path: str | os.PathLike) -> int:
    """The input side of a .tflite file or a run folder's model."""
    path = Path(model_path)
    if path.suffix == ".tflite":
        from qa_headpose.inference.runtime import TFLiteRunner

        return TFLiteRunner(path).input_size
    from qa_headpose.training.workflow import read_run_config

    return read_run_config(path)["model"].input_size


def check_model(path: str | os.PathLike, expect_int8: bool = False) -> None:
    """Loads a .tflite (or reads a run folder's config) so a bad model fails at once.

    Raises:
        ModelError: for a missing, corrupt or non-head-pose .tflite, one that disagrees with its
            JSON, or (``expect_int8``) a model that is not a full-int8 .tflite.
        FileNotFoundError, ValueError: for a folder that is not a training run.
    """
    from qa_headpose.core.errors import ModelError
    from qa_headpose.inference.runtime import TFLiteRunner

    path = Path(path)
    if path.suffix != ".tflite":
        from qa_headpose.training.workflow import read_run_config

        read_run_config(path)
        if expect_int8:
            raise ModelError(f"--expect-int8: {path} is a Keras run folder, not a full-int8 .tflite")
        return
    runner = TFLiteRunner(path)
    if expect_int8 and not runner.is_fully_int8():
        raise ModelError(
            f"--expect-int8: {path} is not a full-int8 model (input {runner.input_dtype.name}, "
            f"output {runner.output_dtype.name})"
        )


def evaluate_model(
    model_path: str | os.PathLike,
    faces: FaceSet,
    phase: str = "qat",
    num_threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
    mirror: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """Per-angle MAE of a model on FSA-Net crops of ``faces``; ``progress`` as `predict_model`'s.

    ``mirror``: each pose is the mean of the crop's and its mirror image's (`angles.average_with_mirror`).

    Returns:
        (metrics dict: yaw/pitch/roll/mean degrees and count (`bands.scored_mae`: an angle the data does not
        annotate is NaN), predictions (n, 3) degrees).
    """
    x = faces.crops(model_input_size(model_path)).astype(np.float32)
    pred = predict_model(model_path, x, phase, num_threads, progress, mirror)
    return scored_mae(pred, faces.poses), pred


def select_faces(faces: FaceSet, subset: str, split: str | None) -> FaceSet:
    """``faces`` (subset "all"), or its "train" or "val" part by the committed val list ``split`` (None: hash)."""
    if subset == "all":
        return faces
    train, val = split_train_val(faces, split)
    return val if subset == "val" else train


def evaluate_on_data(
    model_path: str | os.PathLike,
    data: list[str],
    subset: str = "all",
    split: str | None = "aflw2000_val",
    phase: str = "qat",
    num_threads: int = 2,
    expect_int8: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    mirror: bool = False,
) -> tuple[dict[str, Any], np.ndarray, FaceSet, dict[str, int]]:
    """Per-angle MAE of a model on data paths, the cheap checks first (missing data, then a bad model).

    ``progress`` is called with ("reading", faces read, faces in the folder) while an image folder
    is read, then ("predicting", faces done, faces).

    Returns:
        (metrics as `evaluate_model`'s, predictions (n, 3) degrees, the faces, `load_filtered`'s counts).

    Raises:
        DataError: for a missing data path or unreadable data; ModelError: see `check_model`.
    """
    for path in data:
        if not Path(path).exists():
            raise DataError(f"No such file or folder: {path}")
    check_model(model_path, expect_int8)
    stage = (lambda name: functools.partial(progress, name)) if progress is not None else (lambda name: None)
    faces, counts = load_filtered(data, progress=stage("reading"), unlabelled_ok=True)
    faces = select_faces(faces, subset, split)
    metrics, pred = evaluate_model(model_path, faces, phase, num_threads, stage("predicting"), mirror)
    return metrics, pred, faces, counts


def benchmark_eval_data(data: list[str], subset: str, split: str | None, max_faces: int | None = None):
    """The accuracy data of a benchmark: a function of the input size -> (float32 crops, poses (n, 3) degrees).

    ``subset`` "val" takes the val part by ``split`` (all faces when it has none).
    """
    faces, _ = load_filtered(data, unlabelled_ok=True)
    if subset == "val":
        val = select_faces(faces, "val", split)
        faces = val if len(val) else faces
    if max_faces:
        faces = faces.subset(range(min(max_faces, len(faces))))
    return lambda size: (faces.crops(size).astype("float32"), faces.poses)
