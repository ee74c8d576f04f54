"""Which models a benchmark measures: files, run folders, the shipped models and your newest export. No TF.

A `ModelSpec` names one model: a .tflite or .onnx file, or a float Keras model (a
training run folder, or float weights ``.h5`` with the ``headpose_train_config.json``
beside them). Specs of one model in several forms share a ``family`` (e.g.
``accurate``: its int8 and float32 .tflite and its Keras model), which the summary
compares.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Sequence

from qa_headpose.inference import registry

FORMATS = ("tflite", "onnx", "keras")
RUNS_DIR_ENV = "QA_HEADPOSE_RUNS_DIR"
# Where `qa-headpose export` writes a run's models by default; the notebook writes "export".
EXPORT_SUBDIRS = ("models", "export")
TRAIN_CONFIG = "headpose_train_config.json"
# The run folder the notebook trains into by default (its RUN_DIR, ../runs/notebook), left out of `newest_run`.
NOTEBOOK_RUN = "notebook"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to measure.

    Fields:
        name: label in the tables ("accurate int8", a file name, ``keras:<run folder>``).
        format: "tflite", "onnx" or "keras".
        path: the model file; for Keras a run folder or a float weights .h5.
        variant: "int8", "float32", "dynamic", "onnx-float", "onnx-int8" or "keras-float".
        family: the model this is one form of (the summary compares the forms of a family).
    """

    name: str
    format: str
    path: str
    variant: str
    family: str = ""


def model_spec(path: str | os.PathLike, name: str | None = None, family: str | None = None) -> ModelSpec:
    """A `ModelSpec` for a .tflite/.onnx file, a run folder or float weights .h5 (a Keras model).

    The variant comes from the ``<name>.json`` written beside exported models, else
    from the file name.

    Args:
        path: the model.
        name: its label (default: the file name, ``keras:<folder>`` for a run).
        family: default: the file's folder (a run: its ``models`` folder, where its export goes).

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: for another kind of file, or a .h5 without its train config beside it.
        ModelError: if the ``<name>.json`` beside the model is unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Model not found: {path}")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"Not a .tflite/.onnx file nor a training run folder: {path}")
        return ModelSpec(
            name or f"keras:{path.name}", "keras", str(path), "keras-float", family or str(path / "models")
        )
    if path.suffix == ".h5":
        if not (path.parent / TRAIN_CONFIG).is_file():
            raise ValueError(f"Float weights need the {TRAIN_CONFIG} beside them: {path}")
        return ModelSpec(name or path.name, "keras", str(path), "keras-float", family or str(path.parent))
    fmt = {".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix)
    if fmt is None:
        raise ValueError(f"Expected a .tflite or .onnx file. Received: {path}")
    variant = None
    meta = path.with_suffix(".json")
    if meta.is_file():
        from qa_headpose.core.errors import ModelError

        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"Unreadable model metadata {meta}: {str(exc).splitlines()[0]}") from None
        variant = data.get("variant") if isinstance(data, dict) else None
    if not variant:
        stem = path.stem.lower()
        known = ("int8", "float32", "dynamic") if fmt == "tflite" else ("int8", "float")
        found = [v for v in known if v in stem]
        variant = found[0] if found else "unknown"
        variant = variant if fmt == "tflite" else f"onnx-{variant}"
    return ModelSpec(name or path.name, fmt, str(path), str(variant), family or str(path.parent))


def find_models(paths: Sequence[str | os.PathLike]) -> list[ModelSpec]:
    """Specs of the given models: shipped names ("accurate", "fast": all forms present), files, folders.

    A folder that is not a run folder gives its .tflite and .onnx files.

    Raises:
        FileNotFoundError: for a missing path, an empty folder, or a name whose model is not shipped yet.
    """
    specs: list[ModelSpec] = []
    for p in paths:
        if isinstance(p, str) and p in registry.MODEL_NAMES:
            specs.extend(_shipped_family(p, required=True))
            continue
        p = Path(p)
        if p.is_dir() and not (p / "config.json").is_file():
            files = sorted([*p.glob("*.tflite"), *p.glob("*.onnx")])
            if not files:
                raise FileNotFoundError(f"No .tflite or .onnx model in {p}")
            specs.extend(model_spec(f) for f in files)
        else:
            specs.append(model_spec(p))
    return specs


def family_specs(
    family: str, int8: Path, float32: Path | None, weights: Path | None, keras: bool = True
) -> list[ModelSpec]:
    """The int8 .tflite, the float32 .tflite and the float Keras model of one model, those that exist."""
    specs = [model_spec(int8, f"{family} int8", family)]
    if float32 is not None and float32.is_file():
        specs.append(model_spec(float32, f"{family} float32", family))
    if keras and weights is not None and weights.is_file() and (weights.parent / TRAIN_CONFIG).is_file():
        specs.append(model_spec(weights, f"{family} float", family))
    return specs


def _shipped_family(name: str, required: bool = False, keras: bool = True) -> list[ModelSpec]:
    int8 = registry.shipped_model_path(name)
    if not int8.is_file():
        if required:
            raise FileNotFoundError(f"The shipped model {name!r} is not installed ({int8} is missing)")
        return []
    files = registry.float_files(name)
    return family_specs(name, int8, files["float32_tflite"], files["float_weights"], keras)


def default_models(keras: bool = True) -> list[ModelSpec]:
    """The shipped models of `registry.MODEL_NAMES` that exist, each as int8, float32 .tflite and Keras float.

    Before the named models are shipped, the package's ``models/headpose_int8.tflite``
    (with the float files beside it) stands in, as family "shipped".

    Args:
        keras: include the float Keras models (their weights and train config must exist).

    Raises:
        FileNotFoundError: if no shipped model is installed.
    """
    specs = [s for name in registry.MODEL_NAMES for s in _shipped_family(name, keras=keras)]
    if specs:
        return specs
    legacy = registry.MODELS_DIR / "headpose_int8.tflite"
    if not legacy.is_file():
        names = ", ".join(str(registry.shipped_model_path(n)) for n in registry.MODEL_NAMES)
        raise FileNotFoundError(f"No shipped head-pose model ({names} and {legacy} are missing); pass --model PATH")
    folder = legacy.parent
    return family_specs(
        "shipped", legacy, folder / "headpose_float32.tflite", folder / "headpose_float.weights.h5", keras
    )


def keras_config_path(spec: ModelSpec) -> Path:
    """The JSON with the model config of a Keras spec (a run's config.json or the train config beside the .h5)."""
    path = Path(spec.path)
    return path / "config.json" if path.is_dir() else path.parent / TRAIN_CONFIG


def keras_input_size(spec: ModelSpec) -> int:
    """Input side of a Keras spec, read from its config JSON (no TF import)."""
    config = keras_config_path(spec)
    try:
        return int(json.loads(config.read_text())["model"]["input_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"Unreadable model config {config}: {exc}") from None


# ---------------------------------------------------------------- your runs
def runs_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder of training runs: ``path``, else ``$QA_HEADPOSE_RUNS_DIR``, else ``./runs``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def newest_run(folder: str | os.PathLike | None = None) -> Path | None:
    """The run under ``folder`` (`runs_dir`) whose ``qat/best.weights.h5`` is newest; None if there is none.

    Only trained runs count: a run still in its float phase has no QAT weights yet, and the
    notebook's run (`NOTEBOOK_RUN`) is the notebook's, not yours (pass it by name to export it).
    """
    root = runs_dir(folder)
    if not root.is_dir():
        return None
    runs = [
        d for d in root.iterdir() if d.is_dir() and d.name != NOTEBOOK_RUN and (d / "qat" / "best.weights.h5").is_file()
    ]
    if not runs:
        return None
    return max(runs, key=lambda d: (d / "qat" / "best.weights.h5").stat().st_mtime)


def run_export(run: str | os.PathLike) -> Path | None:
    """The int8 .tflite exported from a run (``RUN/models``, or the notebook's ``RUN/export``), or None."""
    for sub in EXPORT_SUBDIRS:
        path = Path(run) / sub / "headpose_int8.tflite"
        if path.is_file():
            return path
    return None


def available_runtimes() -> dict[str, bool]:
    """Which runtimes are installed (looked up, not imported)."""
    has = {
        name: importlib.util.find_spec(name) is not None
        for name in ("ai_edge_litert", "tensorflow", "onnxruntime", "tf_keras")
    }
    keras = has["tensorflow"] and has["tf_keras"]
    return {
        "litert": has["ai_edge_litert"],
        "tf.lite": has["tensorflow"],
        "onnxruntime": has["onnxruntime"],
        "keras": keras,
        "keras.call": keras,
    }
