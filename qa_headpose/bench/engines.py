"""What a benchmark row calls: one model on one runtime, float32 pixels in and degrees out.

Every engine is called like `runtime.TFLiteRunner`, ``engine(x)`` with float32
(batch, S, S, 3) BGR pixels in [0, 255] -> float32 (batch, 3) degrees, so that the
rows time the same thing on every runtime:

- LiteRT (XNNPACK on, the default interpreter) **is** `TFLiteRunner`: the rows time
  what `HeadPoseEstimator` runs, its quantize, invoke and dequantize included.
- tf.lite (deprecated, behind ``--runtimes``) is `TFLiteRunner(interpreter_cls=tf.lite.Interpreter)`.
- XNNPACK off (behind ``--xnnpack``): `TFLiteRunner` has no setting for the op
  resolver, so `UndelegatedRunner` makes the interpreter with
  ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` and reuses the runtime's input check and
  (de)quantization around its invoke.
- onnxruntime is `onnx_export.OnnxRunner`; Keras is the float model, called with
  ``predict_on_batch`` or ``model(x, training=False)``.

The extra runtimes live here, not in the inference runtime. Engines are made in the
worker process (`worker`), where importing TensorFlow costs nobody else.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

TF_LITE_NOTE = "tf.lite.Interpreter is deprecated (scheduled for deletion); ai_edge_litert is its replacement"
KERAS_CALL_NOTE = "keras.call is model(x, training=False), eager, with its per-call overhead"
# Config runtime name -> the runtime column of the rows.
KERAS_MODES = {"keras": "keras.predict_on_batch", "keras.call": "keras.call"}


class EngineSkip(Exception):
    """The runtime cannot run this model (it fails to load it); the row is skipped with this reason."""


class UndelegatedRunner:
    """A .tflite on an interpreter without the default XNNPACK delegate (builtin kernels only).

    Args:
        path: the .tflite file.
        num_threads: interpreter threads.
        module: "litert" (ai_edge_litert) or "tf.lite".
    """

    def __init__(self, path: str, num_threads: int, module: str = "litert") -> None:
        from qa_headpose.inference import runtime

        if module == "litert":
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        else:
            import tensorflow as tf

            Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
        content, name = runtime.read_model(path)
        try:
            self.interpreter = Interpreter(
                model_content=content,
                num_threads=int(num_threads),
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise runtime.ModelError(f"Not a valid TFLite model: {name} ({str(exc).strip().splitlines()[0]})") from None
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.input_size = int(inp["shape"][1])
        self.input_dtype, self.output_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
        self._in_q, self._out_q = tuple(inp["quantization"]), tuple(out["quantization"])
        self._in, self._out, self._batch = inp["index"], out["index"], int(inp["shape"][0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (batch, S, S, 3) pixels -> float32 (batch, 3) degrees."""
        from qa_headpose.inference.runtime import check_model_input, dequantize, quantize

        x = check_model_input(x, self.input_size)
        if len(x) != self._batch:
            self.interpreter.resize_tensor_input(self._in, [len(x), self.input_size, self.input_size, 3])
            self.interpreter.allocate_tensors()
            self._batch = len(x)
        self.interpreter.set_tensor(self._in, quantize(x, self.input_dtype, self._in_q))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._out).reshape(len(x), 3)
        return dequantize(raw, self.output_dtype, self._out_q)


class Engine:
    """One model on one runtime, ready to time.

    Attributes:
        runtime: the row's runtime ("litert", "tf.lite", "onnxruntime", "keras.predict_on_batch", "keras.call").
        xnnpack: XNNPACK delegate on/off for TFLite, None elsewhere.
        input_size, input_dtype: the model input (side; the dtype the runtime is fed).
        file_size: bytes of the model file (the weights .h5 for Keras).
        load_seconds: time to create the interpreter/session/model.
        note: anything the row's numbers need to be read with.
    """

    def __init__(
        self,
        call: Any,
        runtime: str,
        xnnpack: bool | None,
        input_size: int,
        input_dtype: Any,
        file_size: int,
        load_seconds: float,
        note: str = "",
    ) -> None:
        self._call = call
        self.runtime, self.xnnpack = runtime, xnnpack
        self.input_size, self.input_dtype = int(input_size), np.dtype(input_dtype)
        self.file_size, self.load_seconds, self.note = int(file_size), float(load_seconds), note

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (batch, S, S, 3) BGR pixels in [0, 255] -> float32 (batch, 3) degrees."""
        return np.asarray(self._call(x), np.float32).reshape(len(x), 3)


def tflite_engine(path: str, runtime: str, threads: int, xnnpack: bool) -> Engine:
    """A .tflite on LiteRT or tf.lite: `TFLiteRunner` with XNNPACK, `UndelegatedRunner` without.

    Raises:
        EngineSkip: if the runtime cannot load the model.
    """
    from qa_headpose.core.errors import ModelError
    from qa_headpose.inference.runtime import TFLiteRunner

    start = time.perf_counter()
    try:
        if xnnpack:
            # One interpreter: the rows time one caller (see `frame.measure_callers` for several).
            interpreter_cls = None  # LiteRT; the inference runtime never imports TensorFlow
            if runtime != "litert":
                import tensorflow as tf

                interpreter_cls = tf.lite.Interpreter
            runner = TFLiteRunner(path, threads, interpreter_cls, max_concurrency=1)
        else:
            runner = UndelegatedRunner(path, threads, runtime)
    except ModelError as exc:
        raise EngineSkip(f"{runtime} cannot load {path}: {exc}") from None
    note = TF_LITE_NOTE if runtime == "tf.lite" else ""
    seconds = time.perf_counter() - start
    return Engine(
        runner, runtime, bool(xnnpack), runner.input_size, runner.input_dtype, os.path.getsize(path), seconds, note
    )


def onnx_engine(path: str, threads: int) -> Engine:
    """An .onnx on onnxruntime (`onnx_export.OnnxRunner`).

    Raises:
        EngineSkip: if onnxruntime cannot load the model.
    """
    from qa_headpose.core.errors import ModelError
    from qa_headpose.training.onnx_export import OnnxRunner

    start = time.perf_counter()
    try:
        runner = OnnxRunner(path, threads)
    except ModelError as exc:
        raise EngineSkip(str(exc)) from None
    seconds = time.perf_counter() - start
    return Engine(runner, "onnxruntime", None, runner.input_size, np.float32, os.path.getsize(path), seconds)


def load_keras_model(path: str) -> Any:
    """The float Keras model of a run folder, or built from float weights .h5 and the train config beside them."""
    path_ = Path(path)
    if path_.is_dir():
        from qa_headpose.training import workflow

        return workflow.load_keras_from_run(path_, "float")
    import dataclasses

    from qa_headpose.bench.models import TRAIN_CONFIG
    from qa_headpose.training.config import ModelConfig, from_dict
    from qa_headpose.training.model import build_model

    raw = json.loads((path_.parent / TRAIN_CONFIG).read_text())
    cfg = dataclasses.replace(from_dict(ModelConfig, raw["model"]), backbone_weights=None)
    model = build_model(cfg)
    model.load_weights(str(path_))
    return model


def keras_engine(model: Any, mode: str, path: str, load_seconds: float) -> Engine:
    """The float Keras model called with ``predict_on_batch`` (mode "keras") or eagerly ("keras.call")."""
    if mode == "keras.call":

        def call(x: np.ndarray) -> np.ndarray:
            return model(x, training=False).numpy()

    else:
        call = model.predict_on_batch
    path_ = Path(path)
    weights = path_ / "float" / "best.weights.h5" if path_.is_dir() else path_
    return Engine(
        call,
        KERAS_MODES[mode],
        None,
        int(model.input_shape[1]),
        np.float32,
        weights.stat().st_size if weights.is_file() else 0,
        load_seconds,
        KERAS_CALL_NOTE if mode == "keras.call" else "",
    )
