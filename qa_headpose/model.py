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

import numpy as np

from qa_headpose._keras import keras
from qa_headpose.config import ModelConfig

logger = logging.getLogger(__name__)

layers = keras.layers

INPUT_NAME = "image"
OUTPUT_NAME = "pose"
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
        [0, 255], output float32 (batch, 3): (yaw, pitch, roll) in degrees.

    Raises:
        ValueError: if ``backbone_weights`` is neither None, "imagenet" nor an
            existing file.
    """
    weights = cfg.backbone_weights
    if weights == "torchvision":
        from qa_headpose.imagenet import torchvision_backbone_h5

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
    outputs = layers.Dense(3, name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=f"headpose_mnv2_{size}_a{cfg.alpha:g}")

    if weights == "imagenet":
        _load_keras_imagenet(model, cfg)
    elif weights is not None:
        model.load_weights(weights, by_name=True, skip_mismatch=False)
        logger.info("Loaded backbone weights from %s", weights)
    return model


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
