"""ONNX export beside TFLite: float (tf2onnx) and int8 QDQ (onnxruntime static quantization).

`convert_to_onnx` and `export_onnx_run` import TensorFlow (inside the functions);
`OnnxRunner` needs only onnxruntime, and is called like `runtime.TFLiteRunner`:
float32 BGR pixels (batch, S, S, 3) in [0, 255] in, (batch, 3) degrees out.

The int8 model is quantized after training, from the *float* Keras model, by
onnxruntime's static (QDQ, per-channel, MinMax) quantizer with training crops as
calibration data, except for the pose output, which gets the QAT model's fixed
degree range: ONNX has no import path for the QAT model's learned ranges, so its
accuracy is measured rather than assumed (see `benchmark.run_benchmark`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import write_model
from qa_headpose.core.errors import ModelError
from qa_headpose.inference.preprocess import CROP_MARGIN

logger = logging.getLogger(__name__)

ONNX_VARIANTS = ("float", "int8")
DEFAULT_OPSET = 17
INPUT_NAME = "image"


def _require(module: str, pip_name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"ONNX export/inference needs {pip_name}: `pip install {pip_name}` (or `pip install -e .[onnx]`)"
        ) from None


def convert_to_onnx(model: Any, opset: int = DEFAULT_OPSET) -> bytes:
    """Converts a float Keras model to ONNX with tf2onnx.

    Args:
        model: a float `keras.Model` from `model.build_model` (input (batch, S, S, 3)).
        opset: the ONNX opset.

    Returns:
        The serialized ONNX model: input ``image`` float32 (batch, S, S, 3) BGR pixels in
        [0, 255] (dynamic batch), output float32 (batch, 3) degrees.

    Raises:
        ImportError: if tf2onnx is not installed.
    """
    tf2onnx = _require("tf2onnx", "tf2onnx")
    from qa_headpose.training._keras import tf

    size = int(model.input_shape[1])
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    return proto.SerializeToString()


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over an array of crops, one per call."""

    def __init__(self, crops: np.ndarray, input_name: str) -> None:
        self._rows = iter(crops.astype(np.float32))
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        row = next(self._rows, None)
        return None if row is None else {self._name: row[None]}

    def rewind(self) -> None:  # not needed by MinMax calibration
        pass


def quantize_onnx_int8(float_onnx: bytes, calibration: np.ndarray, per_channel: bool = True) -> bytes:
    """Static int8 QDQ quantization of a float ONNX model with onnxruntime.

    Args:
        float_onnx: the float model from `convert_to_onnx`.
        calibration: float32 (n, S, S, 3) training crops in [0, 255].
        per_channel: per-channel weight scales (as TFLite's int8 convolutions).

    Returns:
        The int8 QDQ ONNX model (float32 input and output; int8 weights and activations).

    Raises:
        ImportError: if onnxruntime is not installed.
        ValueError: for an empty calibration set.
    """
    _require("onnxruntime", "onnxruntime")
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from qa_headpose.training.qat import OUTPUT_SCALE_DEG

    if calibration.ndim != 4 or len(calibration) == 0:
        raise ValueError(f"calibration must be (n>0, S, S, 3). Received: {calibration.shape}")
    # The pose output gets the QAT model's fixed int8 range, [-100, 99.22] degrees, not the range
    # of the calibration crops' poses: MinMax calibration clipped every pose beyond the most
    # turned calibration face (a roll of 56.6 degrees came out as 31.0 with 16 crops).
    output = onnx.load_model_from_string(float_onnx).graph.output[0].name
    output_range = {output: [{"scale": np.array(OUTPUT_SCALE_DEG, np.float32), "zero_point": np.array(0, np.int8)}]}
    with tempfile.TemporaryDirectory(prefix="qa_headpose_onnx_") as tmp:
        src, pre, dst = (Path(tmp) / name for name in ("float.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(float_onnx)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            _CalibrationReader(calibration, INPUT_NAME),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "TensorQuantOverrides": output_range},
        )
        return dst.read_bytes()


class OnnxRunner:
    """Runs a head-pose ONNX model with onnxruntime on float32 BGR pixels; returns degrees.

    Args:
        model: path to a .onnx file, or its bytes.
        num_threads: onnxruntime intra-op threads (inter-op: 1, sequential execution).

    Raises:
        ModelError: if the model is unreadable or its input/output is not (batch, S, S, 3) -> (batch, 3).
        ImportError: if onnxruntime is not installed.
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int = 1) -> None:
        ort = _require("onnxruntime", "onnxruntime")
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1. Received: num_threads={num_threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
        if not isinstance(model, (bytes, bytearray)) and not Path(model).is_file():
            raise ModelError(f"Model file not found: {model}")
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"Not a valid ONNX model: {model if isinstance(model, (str, Path)) else '<bytes>'} ({first})"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"Expected 1 input and 1 output. Received: {len(inputs)} and {len(outputs)}")
        shape = inputs[0].shape
        if len(shape) != 4 or not isinstance(shape[1], int) or shape[1] != shape[2] or shape[3] != 3:
            raise ModelError(f"Not a head-pose model: input {shape}; expected (batch, S, S, 3)")
        self.num_threads = int(num_threads)
        self.input_size = int(shape[1])
        self.input_dtype = np.dtype(np.float32)
        self._input_name = inputs[0].name

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """One session call on a prepared float32 batch, without checks (for timing)."""
        return self.session.run(None, {self._input_name: x})[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs the model.

        Args:
            x: float32 (batch, S, S, 3) BGR pixels in [0, 255] (`preprocess.to_model_input`).

        Returns:
            float32 (batch, 3): (yaw, pitch, roll) in degrees.

        Raises:
            ValueError: if ``x`` has another shape, is not real-valued, or holds NaN/inf
                (the same checks as `runtime.TFLiteRunner`).
        """
        from qa_headpose.inference.runtime import check_model_input

        x = check_model_input(x, self.input_size).astype(np.float32, copy=False)
        return np.asarray(self.run_raw(x), dtype=np.float32).reshape(len(x), 3)


def export_onnx_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    calibration: np.ndarray | None = None,
    variants: tuple[str, ...] = ONNX_VARIANTS,
    name: str = "headpose",
    opset: int = DEFAULT_OPSET,
) -> dict[str, dict[str, Any]]:
    """Writes ``<name>_onnx_<variant>.onnx`` (+ .json) from a run folder's float Keras model.

    Args:
        run_dir: a trained run folder (`workflow.train_run`).
        out_dir: where the models go (created).
        calibration: float32 (n, S, S, 3) training crops in [0, 255]; needed for "int8".
        variants: any of "float" and "int8" (QDQ).
        name: file name prefix.
        opset: the ONNX opset.

    Returns:
        variant -> metadata written beside the model.

    Raises:
        ValueError: for an unknown variant, or "int8" without calibration crops.
        ImportError: if tf2onnx or onnxruntime is missing.
    """
    from qa_headpose.training import workflow
    from qa_headpose.training.config import to_dict

    unknown = set(variants) - set(ONNX_VARIANTS)
    if unknown or not variants:
        raise ValueError(f"ONNX variants are {ONNX_VARIANTS}. Received: {variants}")
    if "int8" in variants and (calibration is None or len(calibration) == 0):
        raise ValueError("The int8 ONNX variant needs calibration crops.")
    run = workflow.read_run_config(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    float_onnx = convert_to_onnx(workflow.load_keras_from_run(run_dir, "float"), opset)
    float_seconds = time.perf_counter() - start
    written = {}
    for variant in variants:
        start = time.perf_counter()
        payload = float_onnx if variant == "float" else quantize_onnx_int8(float_onnx, calibration)
        seconds = float_seconds + (time.perf_counter() - start if variant == "int8" else 0.0)
        runner = OnnxRunner(payload)  # refuses to write a model that does not load
        meta = {
            "variant": f"onnx-{variant}",
            "format": "onnx",
            "opset": opset,
            "input_name": INPUT_NAME,
            "input_size": runner.input_size,
            "input_dtype": "float32",
            "output_dtype": "float32",
            "input": "BGR pixels, float values in [0, 255], shape (batch, S, S, 3)",
            "output_order": list(angles.ANGLE_ORDER),
            "output_units": "degrees",
            "crop_margin": CROP_MARGIN,
            "quantization": "static int8 QDQ, per-channel weights, MinMax calibration from the float model"
            if variant == "int8"
            else "none (float32)",
            "num_calibration": int(len(calibration)) if variant == "int8" else 0,
            "model_config": to_dict(run["model"]),
            "file_size_bytes": len(payload),
            "convert_seconds": round(seconds, 1),
        }
        path = out_dir / f"{name}_onnx_{variant}.onnx"
        meta = write_model(path, payload, meta)
        logger.info("Wrote %s (%d bytes)", path, len(payload))
        written[variant] = meta
    return written
