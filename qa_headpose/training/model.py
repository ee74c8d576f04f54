"""MobileNetV2 head-pose regressor as one flat functional graph (tfmot cannot wrap nested models).

The backbone mirrors ``keras.applications.MobileNetV2`` layer for layer, with the
same layer names, so Keras' ImageNet weights load by name. Stride-2 convolutions
pad one pixel on every side (as torchvision does) instead of TF's "same"
bottom/right padding, so that ported torchvision weights compute exactly what
they did in PyTorch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import atomic_path
from qa_headpose.training._keras import keras
from qa_headpose.training.config import ModelConfig
from qa_headpose.training.imagenet import default_cache_dir, find_weights_file, port_torchvision_mobilenet_v2
from qa_headpose.training.torch_checkpoint import read_torch_state_dict

logger = logging.getLogger(__name__)

layers = keras.layers

INPUT_NAME = "image"
OUTPUT_NAME = "pose"
# With angle bins: the bin scores (batch, 3 * bins), angle-major, that the cross-entropy reads in training.
BIN_LOGITS_NAME = "pose_bin_logits"
BIN_SOFTMAX_NAME = "pose_bin_softmax"
# torchvision's ImageNet normalisation, in RGB order, applied by the first layer.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_BLOCKS = (  # (filters, stride, expansion) for blocks 0..16, as in the paper
    (16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
    (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
    (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6),
)  # fmt: skip


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channel rounding of MobileNetV2 (never below 90% of the value)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def input_norm_weights(keras_imagenet: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (1, 1, 3, 3) and bias (3,) that map BGR [0, 255] to normalised RGB.

    Args:
        keras_imagenet: True for Keras' MobileNetV2 convention ([-1, 1] per channel),
            False for torchvision's (mean/std per channel).
    """
    if keras_imagenet:
        mean, std = np.full(3, 0.5), np.full(3, 0.5)
    else:
        mean, std = np.array(IMAGENET_MEAN_RGB), np.array(IMAGENET_STD_RGB)
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for rgb in range(3):
        kernel[0, 0, 2 - rgb, rgb] = 1.0 / (255.0 * std[rgb])  # input is BGR
    return kernel, (-mean / std).astype(np.float32)


def _conv_bn(
    x, filters: int, kernel: int, stride: int, name: str, bn_name: str, cfg: ModelConfig, relu_name: str | None
):
    if stride == 2:
        x = layers.ZeroPadding2D(padding=kernel // 2, name=f"{name}_pad")(x)
    padding = "valid" if stride == 2 else "same"
    if filters == 0:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=cfg.bn_momentum, name=bn_name)(x)
    if relu_name:
        x = layers.ReLU(6.0, name=relu_name)(x)
    return x


def _inverted_residual(x, block_id: int, filters: int, stride: int, expansion: int, cfg: ModelConfig):
    in_channels = x.shape[-1]
    out_channels = make_divisible(filters * cfg.alpha, 8)
    inputs = x
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = _conv_bn(
            x, expansion * in_channels, 1, 1, prefix + "expand", prefix + "expand_BN", cfg, prefix + "expand_relu"
        )
    x = _conv_bn(x, 0, 3, stride, prefix + "depthwise", prefix + "depthwise_BN", cfg, prefix + "depthwise_relu")
    x = _conv_bn(x, out_channels, 1, 1, prefix + "project", prefix + "project_BN", cfg, None)
    if in_channels == out_channels and stride == 1:
        x = layers.Add(name=prefix + "add")([inputs, x])
    return x


def build_model(cfg: ModelConfig = ModelConfig()) -> keras.Model:
    """Builds the float regressor.

    Args:
        cfg: the model configuration.

    Returns:
        A functional `keras.Model`: input float32 (batch, S, S, 3) BGR pixels in
        [0, 255], output float32 (batch, 3): (yaw, pitch, roll) in degrees (with
        ``cfg.angle_bins``, the expectation over the bins; see `with_bin_logits`).

    Raises:
        ValueError: if ``backbone_weights`` is neither None, "imagenet" nor an
            existing file.
    """
    weights = cfg.backbone_weights
    if weights == "torchvision":
        weights = str(torchvision_backbone_h5())
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise ValueError(
            "backbone_weights must be None, 'imagenet', 'torchvision' or an existing .h5 file. "
            f"Received: backbone_weights={weights!r}"
        )
    size = cfg.input_size
    inputs = keras.Input((size, size, 3), name=INPUT_NAME)
    norm = layers.Conv2D(3, 1, use_bias=True, trainable=False, name="input_norm")
    x = norm(inputs)
    norm.set_weights(list(input_norm_weights(keras_imagenet=weights == "imagenet")))

    x = _conv_bn(x, make_divisible(32 * cfg.alpha, 8), 3, 2, "Conv1", "bn_Conv1", cfg, "Conv1_relu")
    for block_id, (filters, stride, expansion) in enumerate(_BLOCKS):
        x = _inverted_residual(x, block_id, filters, stride, expansion, cfg)
    last = make_divisible(1280 * cfg.alpha, 8) if cfg.alpha > 1.0 else 1280
    x = _conv_bn(x, last, 1, 1, "Conv_1", "Conv_1_bn", cfg, "out_relu")

    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = _bin_head(x, cfg.angle_bins) if cfg.angle_bins else layers.Dense(3, name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=f"headpose_mnv2_{size}_a{cfg.alpha:g}")

    if weights == "imagenet":
        _load_keras_imagenet(model, cfg)
    elif weights is not None:
        model.load_weights(weights, by_name=True, skip_mismatch=False)
        logger.info("Loaded backbone weights from %s", weights)
    return model


def angle_bin_width(bins: int) -> float:
    """Width (degrees) of each of ``bins`` equal bins over -ANGLE_LIMIT_DEG..ANGLE_LIMIT_DEG; bin 0 starts at the limit."""
    return 2 * angles.ANGLE_LIMIT_DEG / bins


def angle_bin_centers(bins: int) -> np.ndarray:
    """Centres (degrees) of the ``bins`` bins of `angle_bin_width`."""
    return (-angles.ANGLE_LIMIT_DEG + angle_bin_width(bins) * (np.arange(bins) + 0.5)).astype(np.float32)


def _bin_head(x, bins: int):
    """Bin scores per angle -> softmax per angle -> expected angle (degrees), all inside the graph.

    The expectation is a Dense layer with a fixed block-diagonal kernel of the bin centres, so the output layer
    is the same kind as the regression head's (one Dense to three degrees, with the same fixed int8 range) and
    the .tflite, its runner and every reader of the model stay as they are.
    """
    logits = layers.Dense(3 * bins, name=BIN_LOGITS_NAME)(x)
    probs = layers.Softmax(axis=-1, name=BIN_SOFTMAX_NAME)(layers.Reshape((3, bins), name="pose_bins")(logits))
    probs = layers.Reshape((3 * bins,), name="pose_bin_probs")(probs)
    expectation = layers.Dense(3, use_bias=False, trainable=False, name=OUTPUT_NAME)
    out = expectation(probs)
    kernel = np.zeros((3 * bins, 3), np.float32)
    for angle in range(3):
        kernel[angle * bins : (angle + 1) * bins, angle] = angle_bin_centers(bins)
    expectation.set_weights([kernel])
    return out


def _load_keras_imagenet(model: keras.Model, cfg: ModelConfig) -> None:
    """Copies Keras' own ImageNet MobileNetV2 weights (downloaded by Keras) by layer name."""
    reference = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=cfg.alpha, include_top=False, weights="imagenet"
    )
    copied = 0
    for layer in reference.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    logger.info("Copied Keras ImageNet weights into %d layers", copied)


def with_bin_logits(model: keras.Model) -> keras.Model:
    """The training view of a binned model: output (batch, 3 + 3 * bins), the degrees then the bin scores.

    It shares every layer (and weight) with ``model``; a regression model is returned as it is. Found by name
    suffix so that a QAT model (whose layers tfmot renames ``quant_<name>``) has the same view.
    """
    found = [layer for layer in model.layers if layer.name.endswith(BIN_LOGITS_NAME)]
    if not found:
        return model
    outputs = layers.Concatenate(name="pose_and_bin_logits")([model.output, found[0].output])
    return keras.Model(model.input, outputs, name=f"{model.name}_training")


def save_backbone_weights(path: str | os.PathLike, alpha: float = 1.0, *, pth: str | os.PathLike | None = None) -> int:
    """Writes the ported ImageNet backbone as an ``.h5`` file that `build_model` loads by name.

    Builds ``build_model(ModelConfig(alpha=alpha, input_size=224))``, sets the
    ported weights, and saves the weights of the sub-model from the input up to
    ``out_relu`` (``input_norm`` included: it is torchvision's normalisation,
    which is also what `build_model` sets for an ``.h5`` backbone). Convolution
    weights do not depend on the input size, so any ``input_size`` loads the file.
    The file is written to a temporary name beside ``path``, then renamed.

    Args:
        path: the output ``.h5`` file (overwritten).
        alpha: width multiplier; torchvision's checkpoint exists for 1.0 only.
        pth: the checkpoint; default `find_weights_file()` (downloaded once if need be).

    Returns:
        The number of layers whose weights were ported.

    Raises:
        FileNotFoundError, ValueError: on a missing or wrong checkpoint, or an
            ``alpha`` the checkpoint does not fit.
    """
    path = Path(path)
    if path.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"The output must be an .h5 file. Received: {path}")
    pth = Path(pth) if pth is not None else find_weights_file()
    ported = port_torchvision_mobilenet_v2(read_torch_state_dict(pth))

    model = build_model(ModelConfig(alpha=alpha, input_size=224))
    for name, weights in ported.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [w.shape for w in weights]:
            raise ValueError(
                f"Layer {name} of the alpha={alpha:g} model has weights {expected}, the checkpoint "
                f"{[w.shape for w in weights]}; torchvision's ImageNet MobileNetV2 is alpha=1.0"
            )
        layer.set_weights(weights)
    backbone = keras.Model(model.input, model.get_layer("out_relu").output, name="mobilenet_v2_imagenet_backbone")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        backbone.save_weights(str(tmp), save_format="h5")
    logger.info("Wrote %d ported ImageNet layers from %s to %s", len(ported), pth, path)
    return len(ported)


def torchvision_backbone_h5(cache_dir: str | os.PathLike | None = None) -> Path:
    """The ported backbone ``.h5``, made once from the checkpoint (`find_weights_file`) and cached.

    The cache is ``cache_dir``, else ``$QA_HEADPOSE_CACHE`` or ``~/.cache/qa_headpose``;
    a downloaded checkpoint is cached there too.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / "mobilenet_v2_torchvision_imagenet_a1.0.h5"
    if not path.is_file():
        save_backbone_weights(path, alpha=1.0, pth=find_weights_file(cache))
    return path
