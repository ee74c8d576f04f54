"""Named training recipes; ``default`` reproduces the shipped model."""

from __future__ import annotations

from qa_headpose.config import ModelConfig, QATConfig, TrainConfig

DEFAULT_DATA = "../shared/data/AFLW2000"

PRESETS: dict[str, dict] = {
    # The shipped model: ImageNet-initialised (torchvision's weights, ported offline), 128x128 input.
    "default": {
        "model": ModelConfig(input_size=128, alpha=1.0, dropout=0.2, backbone_weights="torchvision"),
        "train": TrainConfig(epochs=60, batch_size=64, learning_rate=1e-3),
        "qat": QATConfig(epochs=10, batch_size=64, learning_rate=5e-5),
        "data": DEFAULT_DATA,
    },
    # The fastest good model: the same recipe at 64x64 (about 3x cheaper per face).
    "fast": {
        "model": ModelConfig(input_size=64, alpha=1.0, dropout=0.2, backbone_weights="torchvision"),
        "train": TrainConfig(epochs=60, batch_size=64, learning_rate=1e-3),
        "qat": QATConfig(epochs=10, batch_size=64, learning_rate=5e-5),
        "data": DEFAULT_DATA,
    },
    "tiny": {
        "model": ModelConfig(input_size=32, alpha=0.35, dropout=0.0),
        "train": TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3),
        "qat": QATConfig(epochs=1, batch_size=16, learning_rate=1e-4),
        "data": DEFAULT_DATA,
    },
}
