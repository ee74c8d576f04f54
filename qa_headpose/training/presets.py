"""Named training recipes: ``accurate`` and ``fast`` reproduce the shipped models, ``teacher-accurate``
and ``teacher-fast`` the teacher that labelled their extra faces, ``default`` the first model (teacher_v1).

Self-training in rounds; each round's teacher labels the 18,606 AFLW_extra faces
(`qa-headpose data pseudo-label`) and its students learn from those labels plus the 1,154
labelled AFLW2000 train faces (repeated 4x per epoch), float then QAT then full-int8 export.
Round 1: the teacher is ``weights/teacher_v1`` (128x128, the labelled faces only); its
students start from its float weights. Rounds 2 and 3: the best earlier models together
label the faces again and the students continue from their weights (``weights/round1``,
``weights/round2``; round 3's ``fast`` at 80x80 input). Round 5 (the shipped models; round 4
was stopped): every model so far read the black padding of AFLW_extra's crops as pitch (1-2
degrees, ``tools/border_bias.py``) and wrote it into the labels. The round-3 students,
fine-tuned on the labelled faces with random black bands (``AugmentConfig.black_border``),
are the border teacher (``weights/teacher_border``); students start from its weights and
learn from its labels, with the same bands (docs/extra_faces.md). Round 6 (``fast`` only): the
round-5 ``fast`` model, 3 epochs on the border teacher's labels with WHENet's yaw averaged in
at large yaw, then QAT (docs/generalization.md). Round 7 (``accurate``): the border teacher's 128x128
member and the same model after 3 epochs on round 6's labels, averaged weight for weight (WiSE-FT), then 6 QAT
epochs at lr 1e-5 as ``fast``. Paths are relative to the repository root.
"""

from __future__ import annotations

import dataclasses

from qa_headpose.training.config import AugmentConfig, ExtraDataConfig, ModelConfig, QATConfig, TrainConfig

DEFAULT_DATA = "../shared/data/AFLW2000"
EXTRA_DATA = "../shared/data/AFLW_extra"
TEACHER_DIR = "weights/teacher_v1"
ROUND1_DIR = "weights/round1"
ROUND2_DIR = "weights/round2"
ROUND3_DIR = "weights/round3"
ROUND6_DIR = "weights/round6"
ROUND7_DIR = "weights/round7"
BORDER_TEACHER_DIR = "weights/teacher_border"
# The first teacher: teacher_v1's float32 and int8 exports (val 3.68 with their mirrors).
TEACHER_V1_MODELS = (f"{TEACHER_DIR}/headpose_float32.tflite", f"{TEACHER_DIR}/headpose_int8.tflite")
PSEUDO_LABELS_V1 = "runs/pseudo/aflw_extra_teacher_v1.csv"
# The second-round teacher: teacher_v1's int8 export and both round-1 students (val 3.62 together, with
# their mirrors).
TEACHER_V2_MODELS = (
    f"{TEACHER_DIR}/headpose_int8.tflite",
    f"{ROUND1_DIR}/headpose_accurate_int8.tflite",
    f"{ROUND1_DIR}/headpose_fast_int8.tflite",
)
PSEUDO_LABELS_V2 = "runs/pseudo/aflw_extra_teacher_v2.csv"
# The third-round teacher: teacher_v1, the round-1 accurate and the round-2 fast int8 models (val 3.60).
TEACHER_V3_MODELS = (
    f"{TEACHER_DIR}/headpose_int8.tflite",
    f"{ROUND1_DIR}/headpose_accurate_int8.tflite",
    f"{ROUND2_DIR}/headpose_fast_int8.tflite",
)
PSEUDO_LABELS_V3 = "runs/pseudo/aflw_extra_teacher_v3.csv"
# The border teacher (the default of `qa-headpose data pseudo-label`): the ``teacher-accurate`` float32 and
# int8 exports and the ``teacher-fast`` float32 export (val 3.51 together, with their mirrors).
TEACHER_MODELS = (
    f"{BORDER_TEACHER_DIR}/accurate_float32.tflite",
    f"{BORDER_TEACHER_DIR}/accurate_int8.tflite",
    f"{BORDER_TEACHER_DIR}/fast_float32.tflite",
)
PSEUDO_LABELS = "runs/pseudo/aflw_extra_teacher_v5.csv"

# Which teacher makes each preset's labels.
TEACHER_OF_LABELS = {
    PSEUDO_LABELS_V1: TEACHER_V1_MODELS,
    PSEUDO_LABELS_V2: TEACHER_V2_MODELS,
    PSEUDO_LABELS_V3: TEACHER_V3_MODELS,
    PSEUDO_LABELS: TEACHER_MODELS,
}


def pseudo_label_command(extra: ExtraDataConfig) -> str:
    """The command that makes ``extra``'s pseudo-label CSV (with its teacher, for a preset's CSV)."""
    command = f"qa-headpose data pseudo-label {extra.path} --out {extra.pseudo_labels}"
    teacher = TEACHER_OF_LABELS.get(extra.pseudo_labels)
    return command + (" --teacher " + " ".join(teacher) if teacher else "")


# Black bands on half the faces (AFLW_extra's faces also carry their own padding).
BORDER_AUGMENT = AugmentConfig(black_border=0.5)


def _last_stage(input_size: int, init_weights: str, qat: QATConfig) -> dict:
    """Fine-tuning on the labelled faces alone with black bands: how the border teacher and the shipped models end."""
    return {
        "model": ModelConfig(input_size=input_size, alpha=1.0, dropout=0.2, backbone_weights=None),
        "train": TrainConfig(
            epochs=12, batch_size=64, learning_rate=1e-4, augment=BORDER_AUGMENT, init_weights=init_weights
        ),
        "qat": qat,
        "data": DEFAULT_DATA,
    }


def _qat_only(preset: dict) -> dict:
    """The preset with no float epochs: QAT starts from its start weights as they are."""
    return {**preset, "train": dataclasses.replace(preset["train"], epochs=0)}


# The border teacher's members: the round-3 students fine-tuned on the labelled faces alone, with black bands.
TEACHER_ACCURATE = _last_stage(128, f"{ROUND3_DIR}/accurate_float.weights.h5", QATConfig(epochs=1, learning_rate=3e-5))

PRESETS: dict[str, dict] = {
    # The shipped accurate model. Round 7 (``weights/round7``): the border teacher's 128x128 member averaged
    # weight for weight with itself after 3 epochs on the WHENet-blended labels, then fast's longer, gentler QAT.
    "accurate": _qat_only(
        _last_stage(128, f"{ROUND7_DIR}/accurate_float.weights.h5", QATConfig(epochs=6, learning_rate=1e-5))
    ),
    # The shipped fast model: 80x80 (2.6x fewer MACs than 128x128). Round 6 (``weights/round6``: from round 5's
    # fast model, ``weights/fast_round5``, 3 epochs on the WHENet-blended labels with black bands), then the
    # last stage's longer, gentler QAT on the labelled faces, without more float epochs.
    "fast": _qat_only(_last_stage(80, f"{ROUND6_DIR}/fast_float.weights.h5", QATConfig(epochs=6, learning_rate=1e-5))),
    "teacher-accurate": TEACHER_ACCURATE,
    "teacher-fast": _last_stage(80, f"{ROUND3_DIR}/fast_float.weights.h5", QATConfig(epochs=1, learning_rate=3e-5)),
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


# The options of `train_configs`: the flags of `qa-headpose train` in snake_case.
TRAIN_OPTIONS = (
    "data",
    "input_size",
    "alpha",
    "dropout",
    "backbone_weights",
    "angle_bins",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "seed",
    "qat_epochs",
    "qat_learning_rate",
    "qat_distill",
    "no_augment",
    "no_flip",
    "rotate_deg",
    "scale_jitter",
    "shift_jitter",
    "no_photometric",
    "black_border",
    "init_weights",
    "extra",
    "extra_labels",
    "pseudo_labels",
    "labelled_repeat",
    "max_mirror_deg",
    "max_gt_yaw_gap_deg",
    "no_extra",
)


def train_configs(preset: str | None = None, **options):
    """The configs of a training run: a preset (or the defaults) with options on top.

    Args:
        preset: a name in `PRESETS`, or None for the config defaults.
        **options: any of `TRAIN_OPTIONS` (the ``qa-headpose train`` flags in snake_case); None or
            False keeps the preset's value.

    Returns:
        (ModelConfig, TrainConfig, QATConfig, data paths, ExtraDataConfig or None).

    Raises:
        ValueError: for an unknown preset or option, no data, or contradicting extra-face options.
    """
    from qa_headpose.training.config import AugmentConfig

    unknown = set(options) - set(TRAIN_OPTIONS)
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}; expected some of {TRAIN_OPTIONS}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: preset={preset!r}")
    opt = {name: options.get(name) for name in TRAIN_OPTIONS}
    recipe = PRESETS[preset] if preset else {}
    model = recipe.get("model", ModelConfig())
    train = recipe.get("train", TrainConfig())
    qat = recipe.get("qat", QATConfig())

    def pick(name: str, default):
        return default if opt[name] is None else opt[name]

    backbone_weights = pick("backbone_weights", model.backbone_weights)
    # torchvision ships ImageNet weights for width 1.0 only: they pick the width unless alpha says otherwise.
    alpha = pick("alpha", 1.0 if backbone_weights == "torchvision" else model.alpha)
    model = ModelConfig(
        input_size=pick("input_size", model.input_size),
        alpha=alpha,
        dropout=pick("dropout", model.dropout),
        backbone_weights=backbone_weights,
        bn_momentum=model.bn_momentum,
        angle_bins=pick("angle_bins", model.angle_bins),
    )
    aug = AugmentConfig.none() if opt["no_augment"] else train.augment
    aug = AugmentConfig(
        flip=aug.flip and not opt["no_flip"],
        rotate_deg=pick("rotate_deg", aug.rotate_deg),
        scale_jitter=pick("scale_jitter", aug.scale_jitter),
        shift_jitter=pick("shift_jitter", aug.shift_jitter),
        photometric=aug.photometric and not opt["no_photometric"],
        black_border=pick("black_border", aug.black_border),
    )
    seed = pick("seed", train.seed)
    train = TrainConfig(
        epochs=pick("epochs", train.epochs),
        batch_size=pick("batch_size", train.batch_size),
        learning_rate=pick("learning_rate", train.learning_rate),
        weight_decay=pick("weight_decay", train.weight_decay),
        seed=seed,
        augment=aug,
        init_weights=pick("init_weights", train.init_weights),
    )
    qat = QATConfig(
        epochs=pick("qat_epochs", qat.epochs),
        batch_size=train.batch_size,
        learning_rate=pick("qat_learning_rate", qat.learning_rate),
        seed=seed + 1,
        augment=aug,
        distill=pick("qat_distill", qat.distill),
    )
    data = opt["data"] or ([recipe["data"]] if recipe.get("data") else None)
    if not data:
        raise ValueError("--data is required (or a --preset that names its data)")
    return model, train, qat, data, _extra_config(opt, None if opt["no_extra"] else recipe.get("extra"))


def _extra_config(opt: dict, preset_extra: ExtraDataConfig | None) -> ExtraDataConfig | None:
    """The extra-faces config from the preset and the options; None without extra faces."""
    import dataclasses

    if opt["no_extra"] and opt["extra"]:
        raise ValueError("--no-extra and --extra contradict each other")
    given = {
        "path": opt["extra"],
        "labels": opt["extra_labels"],
        "pseudo_labels": opt["pseudo_labels"],
        "labelled_repeat": opt["labelled_repeat"],
        "max_mirror_deg": opt["max_mirror_deg"],
        "max_gt_yaw_gap_deg": opt["max_gt_yaw_gap_deg"],
    }
    given = {k: v for k, v in given.items() if v is not None}
    if preset_extra is None and not opt["extra"]:
        if given:
            raise ValueError(f"--{next(iter(given)).replace('_', '-')} needs --extra FOLDER")
        return None
    if preset_extra is None:
        return ExtraDataConfig(**given)
    return dataclasses.replace(preset_extra, **given)
