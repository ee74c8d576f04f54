"""TFLite inference without TensorFlow: LiteRT's interpreter, quantizing in and dequantizing out.

`TFLiteRunner` is called like the Keras model, float32 BGR pixels in and degrees
out, whatever the model's input/output dtypes (float32, int8 or uint8).

Thread safety: a LiteRT interpreter holds its input and output tensors, so two
threads must never use one at the same time. `InterpreterPool` lends each
concurrent caller an interpreter of its own (created on demand, up to a bound), so
`TFLiteRunner` and `detect.FaceDetector` may be shared by any number of threads:
every call returns what it returns alone, and callers run in parallel (LiteRT
releases the GIL in ``invoke``) up to the pool's size, then wait for a free one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qa_headpose.core.angles import average_with_mirror
from qa_headpose.core.atomic import sha256_bytes
from qa_headpose.core.errors import ModelError
from qa_headpose.inference.interpreter import (  # noqa: F401 (this module's names before the split)
    InterpreterPool,
    check_max_concurrency,
    default_max_concurrency,
    load_interpreter,
    read_model,
)

logger = logging.getLogger(__name__)


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


class _Slot:
    """One pooled interpreter and the batch size its input is allocated for."""

    def __init__(self, interpreter: Any, batch: int) -> None:
        self.interpreter = interpreter
        self.batch = batch


class TFLiteRunner:
    """Runs a head-pose .tflite on batches of float32 BGR pixels and returns degrees.

    Thread-safe: one runner may be called from any number of threads at once. Each
    concurrent call gets an interpreter of its own from a pool (created on first need,
    at most ``max_concurrency``; further callers wait for a free one), so every call
    returns exactly what it returns alone and throughput grows with callers up to the
    pool's size. Each interpreter uses ``num_threads`` threads of its own.

    Args:
        model: path to the .tflite file, or its bytes.
        num_threads: interpreter threads.
        interpreter_cls: the interpreter class; None for LiteRT's (see `load_interpreter`).
        max_concurrency: most interpreters (concurrent calls); None for the number of CPUs.

    Raises:
        ModelError: if the model is unreadable, its input/output is not
            (1, S, S, 3) -> (1, 3), or the ``<model>.json`` written beside it by the
            export is unreadable or names another ``input_size``, ``input_dtype`` or
            ``output_dtype`` than the model has (a model file swapped under its JSON).
        ValueError: if num_threads or max_concurrency < 1.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        num_threads: int = 1,
        interpreter_cls: Callable[..., Any] | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        max_concurrency = check_max_concurrency(max_concurrency)
        self._content, self._name = read_model(model)
        interpreter = load_interpreter(self._content, num_threads, interpreter_cls, name=self._name)
        self.num_threads = int(num_threads)
        self.interpreter_cls = interpreter_cls
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
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
        if not isinstance(model, (bytes, bytearray)):
            self._check_metadata(Path(model))
        self._pool: InterpreterPool[_Slot] = InterpreterPool(
            self._new_slot, max_concurrency, _Slot(interpreter, int(shape_in[0]))
        )

    @property
    def max_concurrency(self) -> int:
        """Most interpreters this runner creates, i.e. calls that run at the same time."""
        return self._pool.max_size

    def __reduce__(self) -> tuple:
        # Pickles as the model bytes and settings (for process pools); interpreters are made anew.
        return (type(self), (self._content, self.num_threads, self.interpreter_cls, self.max_concurrency))

    def _new_slot(self) -> _Slot:
        interpreter = load_interpreter(self._content, self.num_threads, self.interpreter_cls, name=self._name)
        return _Slot(interpreter, int(interpreter.get_input_details()[0]["shape"][0]))

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
        if "sha256" in meta and meta["sha256"] != sha256_bytes(self._content):
            # The export writes the JSON first, then the model (core.atomic.write_model): a crash
            # between the two, or a model copied over another, leaves a JSON that names other bytes.
            raise ModelError(
                f"{path} does not match {meta_path.name}: the JSON names a model with sha256 "
                f"{str(meta['sha256'])[:12]}..., the file has {sha256_bytes(self._content)[:12]}... (export again)"
            )
        for key, value in actual.items():
            if key in meta and meta[key] != value:
                raise ModelError(
                    f"{path} does not match {meta_path.name}: the model's {key} is {value}, the JSON says {meta[key]!r}"
                )

    def _resize(self, slot: _Slot, batch: int) -> None:
        if batch != slot.batch:
            slot.batch = -1  # unknown until the resize is done (it may fail half-way)
            slot.interpreter.resize_tensor_input(self._input_index, [batch, self.input_size, self.input_size, 3])
            slot.interpreter.allocate_tensors()
            slot.batch = batch

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float pixels -> the model's input dtype, with its (scale, zero_point)."""
        return quantize(x, self.input_dtype, self.input_quantization)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """The model's output -> float32 degrees."""
        return dequantize(y, self.output_dtype, self.output_quantization)

    def __call__(self, x: np.ndarray, mirror: bool = False) -> np.ndarray:
        """Runs the model (thread-safe).

        Args:
            x: float32 (batch, S, S, 3) BGR pixels in [0, 255] (`preprocess.to_model_input`).
            mirror: average each crop's pose with its mirror image's (see `run`).

        Returns:
            float32 (batch, 3): (yaw, pitch, roll) in degrees.

        Raises:
            ValueError: if ``x`` has another shape, is not real-valued, or holds NaN/inf.
        """
        return self.run(x, mirror)[0]

    def run(self, x: np.ndarray, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Runs the model and says which outputs lie at an end of the output's integer range (thread-safe).

        An int8 output at -128 or 127 (for the shipped model -100 and +99.22 degrees) is
        saturated: the true angle may lie anywhere beyond it.

        With ``mirror``, every crop and its horizontal mirror go through the model in one
        call (a batch twice as large) and each pose is their mean, the mirror's flipped back
        (`angles.average_with_mirror`): more accurate, at about twice the model's time. An
        angle is saturated when it is in either of the two.

        Args:
            x: float32 (batch, S, S, 3) BGR pixels in [0, 255] (`preprocess.to_model_input`).
            mirror: test-time mirroring, as above.

        Returns:
            (float32 (batch, 3) degrees (yaw, pitch, roll), bool (batch, 3) saturated);
            never saturated for a float output.

        Raises:
            ValueError: if ``x`` has another shape, is not real-valued, or holds NaN/inf.
        """
        x = check_model_input(x, self.input_size)
        if mirror:
            n = len(x)
            degrees, saturated = self.run(np.concatenate([x, x[:, :, ::-1]]))
            return average_with_mirror(degrees[:n], degrees[n:]), saturated[:n] | saturated[n:]
        q = self.quantize_input(x)
        with self._pool.borrow() as slot:
            self._resize(slot, len(x))
            slot.interpreter.set_tensor(self._input_index, q)
            slot.interpreter.invoke()
            raw = slot.interpreter.get_tensor(self._output_index)  # a copy, not a view of the interpreter
        raw = raw.reshape(len(x), 3)
        if self.output_dtype.kind in "iu":
            info = np.iinfo(self.output_dtype)
            saturated = (raw == info.min) | (raw == info.max)
        else:
            saturated = np.zeros(raw.shape, bool)
        return self.dequantize_output(raw), saturated

    def output_range(self) -> tuple[float, float] | None:
        """(lowest, highest) degrees the model can output (the ends of its integer output); None for float."""
        if self.output_dtype.kind not in "iu":
            return None
        info = np.iinfo(self.output_dtype)
        ends = self.dequantize_output(np.array([info.min, info.max], self.output_dtype))
        return float(ends[0]), float(ends[1])

    def describe_ops(self) -> list[dict[str, Any]]:
        """Every op of the model with the dtypes of its tensors (for checks and reports)."""
        with self._pool.borrow() as slot:
            tensors = {t["index"]: t for t in slot.interpreter.get_tensor_details()}
            ops = slot.interpreter._get_ops_details()

        def _dtype(index: int) -> str:
            return np.dtype(tensors[index]["dtype"]).name if index in tensors else "none"

        return [
            {
                "op": op["op_name"],
                "inputs": [_dtype(i) for i in op["inputs"] if i >= 0],
                "outputs": [_dtype(i) for i in op["outputs"]],
            }
            for op in ops
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
