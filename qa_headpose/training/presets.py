"""Named training recipes: ``accurate`` and ``fast`` reproduce the shipped models.

Both students start from the teacher's float weights (``weights/teacher_v1``, the
128x128 model trained on the 1,154 labelled AFLW2000 train faces) and learn from
those faces (repeated 4x per epoch) plus the 18,606 AFLW_extra faces labelled by the
teacher (`qa-headpose data pseudo-label`), then QAT, then full-int8 export.
Paths are relative to the repository root (where the commands are run).
"""

from __future__ import annotations

from qa_headpose.training.config import ExtraDataConfig, ModelConfig, QATConfig, TrainConfig

DEFAULT_DATA = "../shared/data/AFLW2000"
EXTRA_DATA = "../shared/data/AFLW_extra"
TEACHER_DIR = "weights/teacher_v1"
TEACHER_FLOAT_WEIGHTS = f"{TEACHER_DIR}/headpose_float.weights.h5"
TEACHER_MODELS = (f"{TEACHER_DIR}/headpose_float32.tflite", f"{TEACHER_DIR}/headpose_int8.tflite")
PSEUDO_LABELS = "runs/pseudo/aflw_extra_teacher_v1.csv"

# The teacher's labels of AFLW_extra, with its least sure faces left out.
_PSEUDO = ExtraDataConfig(
    path=EXTRA_DATA,
    labels="pseudo",
    pseudo_labels=PSEUDO_LABELS,
    labelled_repeat=4,
    max_mirror_deg=8.0,
    max_gt_yaw_gap_deg=25.0,
)

PRESETS: dict[str, dict] = {
    # The shipped accurate model: 128x128, the teacher fine-tuned on its own labels of 18,606 more faces.
    "accurate": {
        "model": ModelConfig(input_size=128, alpha=1.0, dropout=0.2, backbone_weights=None),
        "train": TrainConfig(epochs=3, batch_size=64, learning_rate=3e-4, init_weights=TEACHER_FLOAT_WEIGHTS),
        "qat": QATConfig(epochs=1, batch_size=64, learning_rate=3e-5),
        "data": DEFAULT_DATA,
        "extra": _PSEUDO,
    },
    # The shipped fast model: 64x64 (4x fewer MACs), distilled from the 128x128 teacher.
    "fast": {
        "model": ModelConfig(input_size=64, alpha=1.0, dropout=0.2, backbone_weights=None),
        "train": TrainConfig(epochs=8, batch_size=64, learning_rate=5e-4, init_weights=TEACHER_FLOAT_WEIGHTS),
        "qat": QATConfig(epochs=2, batch_size=64, learning_rate=3e-5),
        "data": DEFAULT_DATA,
        "extra": _PSEUDO,
    },
    # The first shipped model (teacher_v1): ImageNet-initialised, the 1,154 labelled faces only.
    "default": {
        "model": ModelConfig(input_size=128, alpha=1.0, dropout=0.2, backbone_weights="torchvision"),
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
