"""TFLite inference without TensorFlow: LiteRT's interpreter, quantizing in and dequantizing out.

`TFLiteRunner` is called like the Keras model, float32 BGR pixels in and degrees
out, whatever the model's input/output dtypes (float32, int8 or uint8).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class ModelError(ValueError):
    """A model file that is missing, unreadable or not a head-pose model."""


def load_interpreter(model: str | os.PathLike | bytes, num_threads: int = 1, prefer: str = "litert") -> Any:
    """Creates a TFLite interpreter; ai_edge_litert when installed, else tf.lite.

    Args:
        model: path to a .tflite file, or its bytes.
        num_threads: CPU threads of the interpreter (>= 1).
        prefer: "litert" (ai_edge_litert, falling back to tf.lite) or "tf" (tf.lite).

    Returns:
        An interpreter with its tensors allocated.

    Raises:
        ModelError: if the file is missing or not a valid TFLite model.
        ValueError: if num_threads < 1.
        ImportError: if neither interpreter is installed.
    """
    if int(num_threads) < 1:
        raise ValueError(f"num_threads must be >= 1. Received: num_threads={num_threads}")
    interpreter_cls = _interpreter_class(prefer)
    kwargs: dict[str, Any] = {"num_threads": int(num_threads)}
    if isinstance(model, (bytes, bytearray)):
        kwargs["model_content"] = bytes(model)
        what = "<bytes>"
    else:
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"Model file not found: {path}")
        if path.stat().st_size < 16:
            raise ModelError(f"Not a TFLite model (file too small): {path}")
        kwargs["model_path"] = str(path)
        what = str(path)
    try:
        interpreter = interpreter_cls(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"Not a valid TFLite model: {what} ({first})") from None
    return interpreter


def _interpreter_class(prefer: str) -> Any:
    if prefer not in ("litert", "tf"):
        raise ValueError(f"prefer must be 'litert' or 'tf'. Received: prefer={prefer!r}")
    if prefer == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter

            return Interpreter
        except ImportError:
            logger.info("ai_edge_litert is not installed; falling back to tf.lite.Interpreter")
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError("No TFLite interpreter found. Install one with `pip install ai-edge-litert`.") from None
    return tf.lite.Interpreter


def check_model_input(x: np.ndarray, input_size: int) -> np.ndarray:
    """Validates a model input batch, float32 (batch>0, S, S, 3) of finite pixel values.

    Raises:
        ValueError: if ``x`` has another shape, is not real-valued, or holds NaN/inf.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"Expected float32 pixel values. Received: dtype={x.dtype}")
    expected = (input_size, input_size, 3)
    if x.ndim != 4 or x.shape[1:] != expected or len(x) == 0:
        raise ValueError(f"Expected input (batch>0, {expected[0]}, {expected[1]}, 3). Received: {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("Input holds NaN or inf values.")
    return x


def quantize(x: np.ndarray, dtype: np.dtype, quantization: tuple[float, int]) -> np.ndarray:
    """Float values -> a tensor of ``dtype`` with its (scale, zero_point); float32 passes through."""
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    scale, zero_point = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, dtype: np.dtype, quantization: tuple[float, int]) -> np.ndarray:
    """A tensor of ``dtype`` -> float32 values with its (scale, zero_point)."""
    if dtype == np.float32:
        return y.astype(np.float32)
    scale, zero_point = quantization
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TFLiteRunner:
    """Runs a head-pose .tflite on batches of float32 BGR pixels and returns degrees.

    Args:
        model: path to the .tflite file, or its bytes.
        num_threads: interpreter threads.
        prefer: which interpreter to use first, "litert" or "tf".

    Raises:
        ModelError: if the model is unreadable, its input/output is not
            (1, S, S, 3) -> (1, 3), or the ``<model>.json`` written beside it by the
            export is unreadable or names another ``input_size``, ``input_dtype`` or
            ``output_dtype`` than the model has (a model file swapped under its JSON).
        ValueError: if num_threads < 1.
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int = 1, prefer: str = "litert") -> None:
        self.interpreter = load_interpreter(model, num_threads, prefer)
        self.num_threads = int(num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"Not a head-pose model: expected 1 input and 1 output. Received: {len(inputs)} and {len(outputs)}"
            )
        shape_in, shape_out = tuple(inputs[0]["shape"]), tuple(outputs[0]["shape"])
        if len(shape_in) != 4 or shape_in[1] != shape_in[2] or shape_in[3] != 3 or shape_out[-1] != 3:
            raise ModelError(
                f"Not a head-pose model: input {shape_in}, output {shape_out}; expected (1, S, S, 3) -> (1, 3)"
            )
        self.input_size = int(shape_in[1])
        self.input_dtype = np.dtype(inputs[0]["dtype"])
        self.output_dtype = np.dtype(outputs[0]["dtype"])
        self.input_quantization = tuple(inputs[0]["quantization"])
        self.output_quantization = tuple(outputs[0]["quantization"])
        self._input_index = inputs[0]["index"]
        self._output_index = outputs[0]["index"]
        self._batch = int(shape_in[0])
        if not isinstance(model, (bytes, bytearray)):
            self._check_metadata(Path(model))

    def _check_metadata(self, path: Path) -> None:
        """Compares the model with the JSON beside it (``<model>.json``), when there is one."""
        import json

        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            return
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ModelError(f"Unreadable model metadata {meta_path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(meta, dict):
            kind = type(meta).__name__
            raise ModelError(f"Unreadable model metadata {meta_path}: expected a JSON object, got {kind}")
        actual = {
            "input_size": self.input_size,
            "input_dtype": self.input_dtype.name,
            "output_dtype": self.output_dtype.name,
        }
        for key, value in actual.items():
            if key in meta and meta[key] != value:
                raise ModelError(
                    f"{path} does not match {meta_path.name}: the model's {key} is {value}, the JSON says {meta[key]!r}"
                )

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._input_index, [batch, self.input_size, self.input_size, 3])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float pixels -> the model's input dtype, with its (scale, zero_point)."""
        return quantize(x, self.input_dtype, self.input_quantization)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """The model's output -> float32 degrees."""
        return dequantize(y, self.output_dtype, self.output_quantization)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Runs the model.

        Args:
            x: float32 (batch, S, S, 3) BGR pixels in [0, 255] (`preprocess.to_model_input`).

        Returns:
            float32 (batch, 3): (yaw, pitch, roll) in degrees.

        Raises:
            ValueError: if ``x`` has another shape, is not real-valued, or holds NaN/inf.
        """
        x = check_model_input(x, self.input_size)
        self._resize(len(x))
        self.interpreter.set_tensor(self._input_index, self.quantize_input(x))
        self.interpreter.invoke()
        return self.dequantize_output(self.interpreter.get_tensor(self._output_index)).reshape(len(x), 3)

    def describe_ops(self) -> list[dict[str, Any]]:
        """Every op of the model with the dtypes of its tensors (for checks and reports)."""
        tensors = {t["index"]: t for t in self.interpreter.get_tensor_details()}

        def _dtype(index: int) -> str:
            return np.dtype(tensors[index]["dtype"]).name if index in tensors else "none"

        return [
            {
                "op": op["op_name"],
                "inputs": [_dtype(i) for i in op["inputs"] if i >= 0],
                "outputs": [_dtype(i) for i in op["outputs"]],
            }
            for op in self.interpreter._get_ops_details()
            if op["op_name"] != "DELEGATE"  # the runtime's XNNPACK node, not an op of the model
        ]

    def is_fully_int8(self) -> bool:
        """True when input, output and every op's activations are int8 (int32 biases allowed)."""
        if self.input_dtype not in (np.int8, np.uint8) or self.output_dtype not in (np.int8, np.uint8):
            return False
        for op in self.describe_ops():
            if op["op"] in ("QUANTIZE", "DEQUANTIZE") and self.input_dtype == np.int8:
                return False
            if any(d not in ("int8", "int32", "uint8") for d in op["inputs"] + op["outputs"]):
                return False
        return True
