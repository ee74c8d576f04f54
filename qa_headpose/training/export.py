"""TFLite export: full int8 from the QAT model, float32 and dynamic-range for comparison."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import write_model
from qa_headpose.core.native_stderr import quiet
from qa_headpose.inference.preprocess import CROP_MARGIN
from qa_headpose.inference.runtime import TFLiteRunner
from qa_headpose.training._keras import keras, tf
from qa_headpose.training.config import ExportConfig

logger = logging.getLogger(__name__)

VARIANTS = ("int8", "float32", "dynamic")


def convert_to_int8_tflite(
    qat_model: keras.Model, calibration: np.ndarray, cfg: ExportConfig = ExportConfig()
) -> bytes:
    """Converts a QAT model to a full-integer TFLite model.

    Args:
        qat_model: a model from `qat.make_qat_model` (trained).
        calibration: float32 (n, S, S, 3) training crops in [0, 255], the representative dataset.
        cfg: export settings (input/output dtype, how many calibration crops).

    Returns:
        The .tflite flatbuffer; input and output are ``cfg.io_dtype``, every op integer.
    """
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ValueError(f"calibration must be (n>0, S, S, 3). Received: {calibration.shape}")
    sample = calibration[: cfg.num_calibration].astype(np.float32)

    def representative():
        for row in sample:
            yield [row[None]]

    logger.info("int8: tracing the QAT model, calibrating on %d crops, converting", len(sample))
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = tf.int8 if cfg.io_dtype == "int8" else tf.uint8
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    with quiet(), warnings.catch_warnings():  # the converter's native lines (calibrator settings, delegate)
        # The input scale comes from the QAT model's own input quantizer, so this converter warning says nothing.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()


def convert_to_float_tflite(model: keras.Model) -> bytes:
    """Float32 TFLite of the float Keras model (the reference for the int8 gap)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with quiet():
        return converter.convert()


def convert_to_dynamic_range_tflite(model: keras.Model) -> bytes:
    """Dynamic-range TFLite (int8 weights, float activations): the upstream's export."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with quiet():  # the converter's native lines (calibrator settings, delegate)
        return converter.convert()


def model_metadata(runner: TFLiteRunner, variant: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a user of the .tflite needs: input, quantization, angle order, crop."""
    return {
        "variant": variant,
        "input_size": runner.input_size,
        "input_dtype": runner.input_dtype.name,
        "output_dtype": runner.output_dtype.name,
        "input_quantization": {
            "scale": float(runner.input_quantization[0]),
            "zero_point": int(runner.input_quantization[1]),
        },
        "output_quantization": {
            "scale": float(runner.output_quantization[0]),
            "zero_point": int(runner.output_quantization[1]),
        },
        "input": "BGR pixels, float values in [0, 255] (quantized with the scale/zero_point above)",
        "output_order": list(angles.ANGLE_ORDER),
        "output_units": "degrees",
        "crop_margin": CROP_MARGIN,
        "crop": "face box enlarged by crop_margin of its width/height per side, clipped to the image, resized",
        "fully_int8": runner.is_fully_int8(),
        **(extra or {}),
    }


def save_tflite(
    payload: bytes, path: str | os.PathLike, variant: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Writes a .tflite and its JSON (``<name>.json``) atomically; returns the metadata.

    Raises:
        ModelError: if the bytes are not a loadable head-pose model (nothing is written).
    """
    with quiet():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate"
        runner = TFLiteRunner(payload)
    meta = model_metadata(runner, variant, {**(extra or {}), "file_size_bytes": len(payload)})
    path = Path(path)
    meta = write_model(path, payload, meta)
    logger.info("Wrote %s (%d bytes)", path, len(payload))
    return meta
