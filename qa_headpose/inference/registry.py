"""The shipped head-pose models by name, and where the package's shipped files live. No TF.

``accurate`` (128x128) is the default; ``fast`` (80x80) trades about 0.15 degrees
for half the model's time per face. A name or a path selects a model everywhere:
`HeadPoseEstimator`, ``qa-headpose predict --model``, ``serve --model``, the benchmark.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
# The shipped sample photo (NASA, public domain): predict's default input, the benchmark's frame, the cards' check.
SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "assets" / "astronaut.jpg"
MODEL_NAMES: tuple[str, ...] = ("accurate", "fast")
DEFAULT_MODEL_NAME = "accurate"
# Float weights and float32 .tflite files live in the repository, outside the package.
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def shipped_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """The full-int8 .tflite of a shipped model, by name (the file is not checked here)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"Unknown model name {name!r}; shipped models: {', '.join(MODEL_NAMES)} (or pass a path)")
    return MODELS_DIR / f"headpose_{name}_int8.tflite"


def resolve_model(model: str | os.PathLike | None) -> Path:
    """A model name ("accurate", "fast"), a path, or None (the default) -> the .tflite path.

    A string that names a shipped model wins over a file of that name in the working
    directory; write ``./accurate`` to mean the file.
    """
    if model is None:
        return shipped_model_path(DEFAULT_MODEL_NAME)
    if isinstance(model, str) and model in MODEL_NAMES:
        return shipped_model_path(model)
    return Path(model)


def float_files(name: str) -> dict[str, Path]:
    """The repository's float files of a shipped model (present in a checkout, not in the wheel)."""
    folder = WEIGHTS_DIR / name
    return {
        "float32_tflite": folder / "headpose_float32.tflite",
        "float_weights": folder / "headpose_float.weights.h5",
        "train_config": folder / "headpose_train_config.json",
    }
