"""Latency, throughput, size, memory and accuracy of every model variant on every runtime, side by side.

`run_benchmark` measures each (model, runtime) pair in a fresh Python subprocess
(a *worker*), so that its peak RSS is its own and TensorFlow is imported only by
the workers that need it (`tf.lite` and Keras rows): the parent process and the
ai_edge_litert/onnxruntime workers never import it.

What one row (`BenchmarkResult`) holds, for one (model, runtime, threads, XNNPACK):

- latency at batch 1: ``warmup`` untimed calls, then ``runs`` calls timed one by
  one with `time.perf_counter_ns`; p50/p90/p99/mean/min in ms. The timed call is
  the inference itself on an already prepared input (TFLite: ``set_tensor`` +
  ``invoke`` + ``get_tensor``; onnxruntime: ``session.run``; Keras:
  ``predict_on_batch(x)`` or ``model(x, training=False)``).
- ``e2e_p50_ms``: the same at batch 1 through the public path, float32 pixels in
  and degrees out (int8 quantize/dequantize in numpy included, as `TFLiteRunner`).
- throughput in faces/s at each batch size (the interpreter input resized):
  batch / median call time over calls repeated for at least ``throughput_seconds``,
  and the same calls against wall time (``throughput_wall_fps``).
- file size, the worker's peak RSS, and per-angle MAE when data is given.

Nothing here prints; `cli.py` formats and writes.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from qa_headpose import angles
from qa_headpose.runtime import dequantize, quantize

logger = logging.getLogger(__name__)

FORMATS = ("tflite", "onnx", "keras")
# Runtime names as they appear in the rows; "keras" in a config expands to both Keras modes.
RUNTIMES = ("litert", "tf.lite", "onnxruntime", "keras")
KERAS_MODES = ("keras.predict_on_batch", "keras.call")
RUNTIME_OF_FORMAT = {"tflite": ("litert", "tf.lite"), "onnx": ("onnxruntime",), "keras": ("keras",)}
TF_LITE_NOTE = "tf.lite.Interpreter is deprecated (scheduled for deletion); ai_edge_litert is its replacement"
LIBRARIES = (
    "numpy",
    "ai-edge-litert",
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "onnxruntime",
    "onnx",
    "tf2onnx",
    "opencv-python-headless",
)
# int8 multiply-accumulates per cycle and core that the widest dot-product instruction
# can retire (one 512-bit VPDPBUSD, or two 256-bit ones, per cycle): an assumption
# for the compute bound, not a measurement.
INT8_MACS_PER_CYCLE = {"avx512_vnni": 64, "avx_vnni": 64, "avx2": 32}


class BenchmarkError(RuntimeError):
    """A worker process that failed in a way that is not a property of the model or runtime."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to measure.

    Fields:
        name: label in the tables (file name, or ``keras:<run folder>``).
        format: "tflite", "onnx" or "keras".
        path: the model file, or the run folder of a Keras model.
        variant: "int8", "float32", "dynamic", "onnx-float", "onnx-int8" or "keras-float"/"keras-qat".
    """

    name: str
    format: str
    path: str
    variant: str


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure.

    Fields:
        threads: thread counts to sweep (interpreter / onnxruntime intra-op / TF intra-op threads).
        batch_sizes: batch sizes of the throughput measurement.
        warmup: untimed calls before the timed ones.
        runs: timed batch-1 calls for the latency percentiles.
        throughput_seconds: minimum wall time of the calls at each batch size.
        runtimes: any of "litert", "tf.lite", "onnxruntime", "keras"; each applies to
            the formats it can run, and those not installed are skipped.
        xnnpack: XNNPACK settings of the TFLite interpreters (True: default delegate on;
            False: BUILTIN_WITHOUT_DEFAULT_DELEGATES).
        eval_batch: batch size of the accuracy pass.
    """

    threads: tuple[int, ...] = (1,)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 10
    runs: int = 200
    throughput_seconds: float = 0.5
    runtimes: tuple[str, ...] = RUNTIMES
    xnnpack: tuple[bool, ...] = (True, False)
    eval_batch: int = 32

    def __post_init__(self) -> None:
        for name in ("threads", "batch_sizes"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values):
                raise ValueError(f"{name} must be positive integers. Received: {name}={values}")
        if self.runs < 3:
            raise ValueError(f"runs must be >= 3 for percentiles. Received: runs={self.runs}")
        if self.warmup < 0 or self.throughput_seconds < 0:
            raise ValueError(
                f"warmup and throughput_seconds must be >= 0. Received: {self.warmup}, {self.throughput_seconds}"
            )
        unknown = set(self.runtimes) - set(RUNTIMES)
        if unknown or not self.runtimes:
            raise ValueError(f"runtimes must be among {RUNTIMES}. Received: runtimes={self.runtimes}")
        if not self.xnnpack:
            raise ValueError("xnnpack needs at least one setting (True and/or False).")


@dataclasses.dataclass
class BenchmarkResult:
    """One measured row: a model on a runtime with a thread count and XNNPACK setting.

    Fields:
        model, variant, format, path: the `ModelSpec`.
        runtime: "litert", "tf.lite", "onnxruntime", "keras.predict_on_batch" or "keras.call".
        threads: threads of the interpreter / session / TF intra-op pool.
        xnnpack: XNNPACK delegate on/off for TFLite rows; None where it does not apply.
        input_size, input_dtype: the model input (side in pixels; dtype fed to the runtime).
        file_size_bytes: size of the model file (the float weights .h5 for Keras rows).
        warmup, runs: untimed and timed batch-1 calls.
        latency_mean_ms, latency_min_ms, latency_p50_ms, latency_p90_ms, latency_p99_ms:
            batch-1 inference time, milliseconds.
        e2e_p50_ms: batch-1 median through the public path (float pixels in, degrees out).
        throughput_fps: faces per second by batch size (keys are the batch sizes as strings):
            batch / median time of one call, over calls repeated for ``throughput_seconds``.
        throughput_wall_fps: the same calls counted against wall time (lower when other
            processes take the CPU: the two together show how busy the machine was).
        peak_rss_mb: peak resident memory (VmHWM, else ru_maxrss) of the worker process that ran this
            (model, runtime) pair, MiB; shared by the rows of that worker.
        baseline_rss_mb: the same worker's peak RSS after importing the runtime, before
            loading the model, MiB.
        load_seconds: time to create the interpreter/session/model.
        mae: per-angle MAE in degrees (yaw, pitch, roll, mean, count) or None without data.
        note: anything the numbers need to be read with.
    """

    model: str
    variant: str
    format: str
    path: str
    runtime: str
    threads: int
    xnnpack: bool | None
    input_size: int
    input_dtype: str
    file_size_bytes: int
    warmup: int
    runs: int
    latency_mean_ms: float
    latency_min_ms: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    e2e_p50_ms: float
    throughput_fps: dict[str, float]
    throughput_wall_fps: dict[str, float]
    peak_rss_mb: float
    baseline_rss_mb: float
    load_seconds: float
    mae: dict[str, float] | None = None
    note: str = ""

    def key(self) -> tuple[str, str, str]:
        """(model, runtime, xnnpack label): the line of a latency-vs-threads plot."""
        return self.model, self.runtime, xnnpack_label(self.xnnpack)


@dataclasses.dataclass
class BenchmarkReport:
    """All rows of a run with the machine they were measured on.

    Fields:
        system: `system_info` (CPU, cores, library versions, load average at start and end).
        config: the `BenchmarkConfig` and the models.
        results: one `BenchmarkResult` per (model, runtime, threads, XNNPACK).
        skipped: pairs that could not run, with the reason.
        profile: per-op profiles and compute bounds (`profile_tflite_ops`, `compute_bound`), if asked.
        frame: whole-frame timings (`measure_frame`), one per thread count, if asked.
        command: the command line that produced the report.
    """

    system: dict[str, Any]
    config: dict[str, Any]
    results: list[BenchmarkResult]
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    profile: dict[str, Any] | None = None
    frame: list[dict[str, Any]] | None = None
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def xnnpack_label(value: bool | None) -> str:
    """'on', 'off' or '-' (not applicable)."""
    return "-" if value is None else ("on" if value else "off")


# ---------------------------------------------------------------- discovery
def model_spec(path: str | os.PathLike) -> ModelSpec:
    """A `ModelSpec` for a .tflite/.onnx file, or a run folder (its float Keras model).

    The variant comes from the ``<name>.json`` written beside exported models, else
    from the file name.

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: for another kind of file.
        ModelError: if the ``<name>.json`` beside the model is unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Model not found: {path}")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"Not a .tflite/.onnx file nor a training run folder: {path}")
        return ModelSpec(f"keras:{path.name}", "keras", str(path), "keras-float")
    fmt = {".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix)
    if fmt is None:
        raise ValueError(f"Expected a .tflite or .onnx file. Received: {path}")
    variant = None
    meta = path.with_suffix(".json")
    if meta.is_file():
        from qa_headpose.runtime import ModelError

        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"Unreadable model metadata {meta}: {str(exc).splitlines()[0]}") from None
        variant = data.get("variant") if isinstance(data, dict) else None
    if not variant:
        stem = path.stem.lower()
        known = ("int8", "float32", "dynamic") if fmt == "tflite" else ("int8", "float")
        found = [v for v in known if v in stem]
        variant = found[0] if found else "unknown"
        variant = variant if fmt == "tflite" else f"onnx-{variant}"
    return ModelSpec(path.name, fmt, str(path), str(variant))


def find_models(paths: Sequence[str | os.PathLike]) -> list[ModelSpec]:
    """Specs of the given files; a folder that is not a run folder gives its .tflite and .onnx files."""
    specs: list[ModelSpec] = []
    for p in paths:
        p = Path(p)
        if p.is_dir() and not (p / "config.json").is_file():
            files = sorted([*p.glob("*.tflite"), *p.glob("*.onnx")])
            if not files:
                raise FileNotFoundError(f"No .tflite or .onnx model in {p}")
            specs.extend(model_spec(f) for f in files)
        else:
            specs.append(model_spec(p))
    return specs


def available_runtimes() -> dict[str, bool]:
    """Which runtimes are installed (looked up, not imported)."""
    has = {
        name: importlib.util.find_spec(name) is not None
        for name in ("ai_edge_litert", "tensorflow", "onnxruntime", "tf_keras")
    }
    return {
        "litert": has["ai_edge_litert"],
        "tf.lite": has["tensorflow"],
        "onnxruntime": has["onnxruntime"],
        "keras": has["tensorflow"] and has["tf_keras"],
    }


# ---------------------------------------------------------------- machine
def system_info() -> dict[str, Any]:
    """CPU model, core counts, clock, SIMD flags, OS, Python and library versions, load average."""
    cpu_model, mhz, flags = platform.processor() or "unknown", None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and cpu_model in ("unknown", "", platform.processor()):
                cpu_model = value
            elif key == "cpu MHz" and mhz is None:
                mhz = float(value)
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "cpu_mhz": mhz,
        "cpu_flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"}),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


# ---------------------------------------------------------------- orchestration
def run_benchmark(
    models: Sequence[ModelSpec],
    cfg: BenchmarkConfig = BenchmarkConfig(),
    eval_data: tuple[np.ndarray, np.ndarray] | Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchmarkReport:
    """Measures every model on every requested runtime that can run it.

    Args:
        models: the models (`find_models`, `model_spec`).
        cfg: what to measure.
        eval_data: for accuracy, (crops float32 (n, S, S, 3) in [0, 255], poses (n, 3)
            degrees), or a function of the input side S returning them (models of
            different sizes); None for no accuracy.
        progress: called with a short line before each worker starts.

    Returns:
        A `BenchmarkReport`; pairs that could not run are listed in ``skipped`` with the reason.

    Raises:
        ValueError: for no models.
    """
    if not models:
        raise ValueError("No model to benchmark.")
    installed = available_runtimes()
    system = system_info()
    results: list[BenchmarkResult] = []
    skipped: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="qa_headpose_bench_") as tmp:
        data_files: dict[int, dict[str, str]] = {}
        for spec in models:
            for runtime in RUNTIME_OF_FORMAT[spec.format]:
                if runtime not in cfg.runtimes:
                    continue
                if not installed[runtime]:
                    skipped.append({"model": spec.name, "runtime": runtime, "reason": f"{runtime} is not installed"})
                    continue
                evaluation = None
                if eval_data is not None:
                    size = _input_size(spec)
                    if size not in data_files:
                        data_files[size] = _write_eval_data(eval_data, size, Path(tmp))
                    evaluation = data_files[size]
                # TF fixes its thread pools at start-up: one Keras worker per thread count.
                thread_groups = [[t] for t in cfg.threads] if runtime == "keras" else [list(cfg.threads)]
                mae_done: dict[str, Any] = {}
                for threads in thread_groups:
                    job = {
                        "spec": dataclasses.asdict(spec),
                        "runtime": runtime,
                        "threads": threads,
                        "xnnpack": list(cfg.xnnpack),
                        "batch_sizes": list(cfg.batch_sizes),
                        "warmup": cfg.warmup,
                        "runs": cfg.runs,
                        "throughput_seconds": cfg.throughput_seconds,
                        "eval_batch": cfg.eval_batch,
                        "eval": None if mae_done else evaluation,
                    }
                    if progress:
                        progress(f"{spec.name} on {runtime}, threads {threads}")
                    try:
                        out = _run_worker(job, Path(tmp))
                    except _WorkerSkip as exc:
                        skipped.append({"model": spec.name, "runtime": runtime, "reason": str(exc)})
                        break
                    for row in out:
                        row_key = f"{row['runtime']}/{row['xnnpack']}"
                        if row["mae"] is not None:
                            mae_done[row_key] = row["mae"]
                        elif row_key in mae_done:
                            row["mae"] = mae_done[row_key]
                        results.append(BenchmarkResult(**row))
    system["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results.sort(key=lambda r: (r.model, r.runtime, xnnpack_label(r.xnnpack), r.threads))
    return BenchmarkReport(
        system, {**dataclasses.asdict(cfg), "models": [dataclasses.asdict(m) for m in models]}, results, skipped
    )


def _input_size(spec: ModelSpec) -> int:
    if spec.format == "keras":
        from qa_headpose.workflow import read_run_config

        return read_run_config(spec.path)["model"].input_size
    meta = Path(spec.path).with_suffix(".json")
    if meta.is_file():
        try:
            size = json.loads(meta.read_text()).get("input_size")
            if size:
                return int(size)
        except ValueError:
            pass
    if spec.format == "onnx":
        from qa_headpose.onnx_export import OnnxRunner

        return OnnxRunner(spec.path).input_size
    from qa_headpose.runtime import TFLiteRunner

    return TFLiteRunner(spec.path).input_size


def _write_eval_data(eval_data, size: int, tmp: Path) -> dict[str, str]:
    crops, poses = eval_data(size) if callable(eval_data) else eval_data
    crops, poses = np.asarray(crops, np.float32), np.asarray(poses, np.float32)
    if crops.shape[1:] != (size, size, 3) or len(crops) != len(poses) or len(crops) == 0:
        raise ValueError(
            f"eval data must be (n>0, {size}, {size}, 3) crops with (n, 3) poses. "
            f"Received: {crops.shape}, {poses.shape}"
        )
    files = {"crops": str(tmp / f"crops_{size}.npy"), "poses": str(tmp / f"poses_{size}.npy")}
    np.save(files["crops"], crops)
    np.save(files["poses"], poses)
    return files


class _WorkerSkip(Exception):
    """The runtime cannot run this model (an unsupported op, a failed conversion)."""


def _run_worker(job: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    job_path = tmp / "job.json"
    out_path = tmp / "out.json"
    job_path.write_text(json.dumps(job))
    if out_path.exists():
        out_path.unlink()
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    code = "from qa_headpose.benchmark import _worker_main; _worker_main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(job_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not out_path.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchmarkError(
            f"benchmark worker for {job['spec']['name']} on {job['runtime']} failed (exit {proc.returncode}):\n{tail}"
        )
    out = json.loads(out_path.read_text())
    if out.get("skip"):
        raise _WorkerSkip(out["skip"])
    return out["rows"]


# ---------------------------------------------------------------- worker (runs in the subprocess)
def _peak_rss_mb() -> float:
    """Peak RSS of this process since its exec, MiB.

    Linux's ru_maxrss survives exec, so a worker started from a big parent (a test run
    with TensorFlow loaded) would report the parent's peak; VmHWM belongs to the new
    address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _worker_main() -> None:
    """Entry point of a worker process: ``python -c ... job.json out.json``."""
    job_path, out_path = sys.argv[1], sys.argv[2]
    job = json.loads(Path(job_path).read_text())
    spec = ModelSpec(**job["spec"])
    runtime = job["runtime"]
    try:
        engines = _import_runtime(runtime, job["threads"][0])
        baseline = _peak_rss_mb()
        rows = _measure(spec, runtime, engines, job)
    except _WorkerSkip as exc:
        Path(out_path).write_text(json.dumps({"skip": str(exc)}))
        return
    peak = _peak_rss_mb()
    for row in rows:
        row["peak_rss_mb"] = round(peak, 1)
        row["baseline_rss_mb"] = round(baseline, 1)
    Path(out_path).write_text(json.dumps({"rows": rows}))


def _import_runtime(runtime: str, threads: int) -> Any:
    if runtime == "litert":
        from ai_edge_litert import interpreter

        return interpreter
    if runtime == "onnxruntime":
        import onnxruntime

        return onnxruntime
    from qa_headpose._keras import tf

    if runtime == "keras":
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def _measure(spec: ModelSpec, runtime: str, module: Any, job: dict[str, Any]) -> list[dict[str, Any]]:
    evaluation = job.get("eval")
    data = (np.load(evaluation["crops"]), np.load(evaluation["poses"])) if evaluation else None
    rows = []
    if spec.format == "tflite":
        for xnnpack in job["xnnpack"]:
            mae = None
            for threads in job["threads"]:
                engine = _TFLiteEngine(spec.path, runtime, module, threads, xnnpack)
                row = _measure_engine(spec, engine, job, threads)
                if data is not None and mae is None:
                    mae = _accuracy(engine, data, job["eval_batch"])
                row["mae"] = mae
                rows.append(row)
    elif spec.format == "onnx":
        mae = None
        for threads in job["threads"]:
            engine = _OnnxEngine(spec.path, threads)
            row = _measure_engine(spec, engine, job, threads)
            if data is not None and mae is None:
                mae = _accuracy(engine, data, job["eval_batch"])
            row["mae"] = mae
            rows.append(row)
    else:
        start = time.perf_counter()
        from qa_headpose import workflow

        model = workflow.load_keras_from_run(spec.path, "qat" if spec.variant == "keras-qat" else "float")
        load_seconds = time.perf_counter() - start
        threads = job["threads"][0]
        mae = (
            _accuracy(_KerasEngine(model, "keras.predict_on_batch", spec.path, load_seconds), data, job["eval_batch"])
            if data is not None
            else None
        )
        for mode in KERAS_MODES:
            engine = _KerasEngine(model, mode, spec.path, load_seconds)
            row = _measure_engine(spec, engine, job, threads)
            row["mae"] = mae
            rows.append(row)
    return rows


class _TFLiteEngine:
    """An interpreter (ai_edge_litert or tf.lite) with XNNPACK on or off, and its io quantization."""

    def __init__(self, path: str, runtime: str, module: Any, threads: int, xnnpack: bool) -> None:
        import warnings

        if runtime == "litert":
            interpreter_cls, resolvers = module.Interpreter, module.OpResolverType
        else:
            interpreter_cls, resolvers = module.lite.Interpreter, module.lite.experimental.OpResolverType
        resolver = resolvers.AUTO if xnnpack else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.interpreter = interpreter_cls(
                    model_path=path, num_threads=int(threads), experimental_op_resolver_type=resolver
                )
                self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise _WorkerSkip(f"{runtime} cannot load {path}: {str(exc).strip().splitlines()[0]}") from None
        self.load_seconds = time.perf_counter() - start
        deprecated = any("deprecated" in str(w.message) for w in caught)
        self.note = TF_LITE_NOTE if runtime == "tf.lite" or deprecated else ""
        self.runtime, self.xnnpack = runtime, bool(xnnpack)
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.input_size = int(inp["shape"][1])
        self.input_dtype = np.dtype(inp["dtype"])
        self.output_dtype = np.dtype(out["dtype"])
        self._in_q, self._out_q = inp["quantization"], out["quantization"]
        self._in, self._out = inp["index"], out["index"]
        self._batch = int(inp["shape"][0])
        self.file_size = os.path.getsize(path)

    def set_batch(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._in, [batch, self.input_size, self.input_size, 3])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self.input_dtype, self._in_q)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, prepared)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        return dequantize(raw, self.output_dtype, self._out_q).reshape(len(raw), 3)


class _OnnxEngine:
    """An onnxruntime session (`onnx_export.OnnxRunner`)."""

    runtime, xnnpack, note = "onnxruntime", None, ""

    def __init__(self, path: str, threads: int) -> None:
        from qa_headpose.onnx_export import OnnxRunner
        from qa_headpose.runtime import ModelError

        start = time.perf_counter()
        try:
            self.runner = OnnxRunner(path, threads)
        except ModelError as exc:
            raise _WorkerSkip(str(exc)) from None
        self.load_seconds = time.perf_counter() - start
        self.input_size, self.input_dtype = self.runner.input_size, np.dtype(np.float32)
        self.file_size = os.path.getsize(path)

    def set_batch(self, batch: int) -> None:
        pass

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32, copy=False)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        return self.runner.run_raw(prepared)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, np.float32).reshape(len(raw), 3)


class _KerasEngine:
    """The float Keras model, called with ``predict_on_batch`` or ``model(x, training=False)``."""

    xnnpack, note = None, ""

    def __init__(self, model: Any, mode: str, run_dir: str, load_seconds: float) -> None:
        self.model, self.runtime, self.load_seconds = model, mode, load_seconds
        self.input_size, self.input_dtype = int(model.input_shape[1]), np.dtype(np.float32)
        weights = Path(run_dir) / "float" / "best.weights.h5"
        self.file_size = weights.stat().st_size if weights.is_file() else 0
        self.note = (
            "keras.call is model(x, training=False), eager, with its per-call overhead" if mode == "keras.call" else ""
        )

    def set_batch(self, batch: int) -> None:
        pass

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32, copy=False)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        if self.runtime == "keras.call":
            return self.model(prepared, training=False).numpy()
        return self.model.predict_on_batch(prepared)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, np.float32).reshape(len(raw), 3)


def _sample_input(size: int, batch: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def _time_calls(call: Callable[[], Any], warmup: int, runs: int) -> np.ndarray:
    for _ in range(warmup):
        call()
    times = np.empty(runs, np.float64)
    clock = time.perf_counter_ns
    for i in range(runs):
        start = clock()
        call()
        times[i] = clock() - start
    return times / 1e6


def _measure_engine(spec: ModelSpec, engine: Any, job: dict[str, Any], threads: int) -> dict[str, Any]:
    size = engine.input_size
    engine.set_batch(1)
    x1 = _sample_input(size, 1)
    prepared = engine.prepare(x1)
    ms = _time_calls(lambda: engine.run(prepared), job["warmup"], job["runs"])
    e2e = _time_calls(
        lambda: engine.finish(engine.run(engine.prepare(x1))), min(job["warmup"], 3), max(3, job["runs"] // 2)
    )
    throughput, throughput_wall = {}, {}
    clock = time.perf_counter_ns
    for batch in job["batch_sizes"]:
        engine.set_batch(batch)
        xb = engine.prepare(_sample_input(size, batch))
        for _ in range(min(3, max(1, job["warmup"]))):
            engine.run(xb)
        calls: list[int] = []
        start = clock()
        while len(calls) < 3 or (clock() - start) / 1e9 < job["throughput_seconds"]:
            t0 = clock()
            engine.run(xb)
            calls.append(clock() - t0)
        elapsed_s = (clock() - start) / 1e9
        throughput[str(batch)] = round(batch * 1e9 / float(np.median(calls)), 1)
        throughput_wall[str(batch)] = round(len(calls) * batch / elapsed_s, 1)
    engine.set_batch(1)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "model": spec.name,
        "variant": spec.variant,
        "format": spec.format,
        "path": spec.path,
        "runtime": engine.runtime,
        "threads": int(threads),
        "xnnpack": engine.xnnpack,
        "input_size": size,
        "input_dtype": engine.input_dtype.name,
        "file_size_bytes": int(engine.file_size),
        "warmup": int(job["warmup"]),
        "runs": int(job["runs"]),
        "latency_mean_ms": round(float(ms.mean()), 4),
        "latency_min_ms": round(float(ms.min()), 4),
        "latency_p50_ms": round(float(p50), 4),
        "latency_p90_ms": round(float(p90), 4),
        "latency_p99_ms": round(float(p99), 4),
        "e2e_p50_ms": round(float(np.median(e2e)), 4),
        "throughput_fps": throughput,
        "throughput_wall_fps": throughput_wall,
        "load_seconds": round(engine.load_seconds, 3),
        "note": engine.note,
    }


def _accuracy(engine: Any, data: tuple[np.ndarray, np.ndarray], batch: int) -> dict[str, Any]:
    crops, poses = data
    engine.set_batch(batch)
    out = []
    for i in range(0, len(crops), batch):
        chunk = crops[i : i + batch]
        if len(chunk) < batch:  # pad the last batch to keep one input shape
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)])
        out.append(engine.finish(engine.run(engine.prepare(chunk))))
    engine.set_batch(1)
    pred = np.concatenate(out)[: len(crops)]
    return {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in angles.mean_absolute_errors(pred, poses).items()
    }


# ---------------------------------------------------------------- per-op profile and compute bound
_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def count_macs(model_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Multiply-accumulates of every op of a .tflite at batch 1, from its tensor shapes.

    Convolutions: output elements x kernel area x input channels (depthwise: x 1);
    fully connected: outputs x inputs. Other ops count 0 MACs; ``elements`` gives
    their output size.

    Returns:
        One dict per op in execution order: index, op, output shape, macs, elements.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(model_path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter.allocate_tensors()
    shapes = {t["index"]: tuple(int(s) for s in t["shape"]) for t in interpreter.get_tensor_details()}
    ops = []
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        out_shape = shapes.get(op["outputs"][0], ())
        elements = int(np.prod(out_shape)) if out_shape else 0
        macs = 0
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op["inputs"]) > 1:
            w = shapes[op["inputs"][1]]  # CONV: (out, kh, kw, in); DEPTHWISE: (1, kh, kw, out)
            macs = elements * w[1] * w[2] * (w[3] if name == "CONV_2D" else 1)
        elif name == "FULLY_CONNECTED" and len(op["inputs"]) > 1:
            w = shapes[op["inputs"][1]]  # (out, in)
            macs = elements * w[1]
        ops.append(
            {
                "index": int(op["index"]),
                "op": name,
                "output_shape": list(out_shape),
                "macs": int(macs),
                "elements": elements,
                "inputs": [int(t) for t in op["inputs"] if t >= 0],
                "outputs": [int(t) for t in op["outputs"]],
            }
        )
    return ops


def _prefix_models(model_bytes: bytes, cuts: Sequence[int]) -> list[bytes]:
    """For each op index k in ``cuts``, the model cut after op k (its output becomes the model's output)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    all_ops, outputs = list(graph.operators), list(graph.outputs)
    prefixes = []
    try:
        for k in cuts:
            graph.operators = all_ops[: k + 1]
            graph.outputs = [int(all_ops[k].outputs[0])]
            prefixes.append(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    finally:
        graph.operators, graph.outputs = all_ops, outputs
    return prefixes


def profile_tflite_ops(
    model_path: str | os.PathLike,
    num_threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    xnnpack: bool = True,
) -> dict[str, Any]:
    """Per-op time of a .tflite with ai_edge_litert, by timing the model cut after each op.

    The pip interpreters expose no op profiler (TFLite's ``benchmark_model
    --enable_op_profiling`` is a separate binary, not shipped in ai-edge-litert or
    tensorflow wheels), so op k's time is estimated as the fastest invoke of the
    model truncated after op k minus that of the model truncated after op k-1 (the
    fastest, not the median, so that other processes on the machine do not leak
    into the differences). Op 0's estimate includes the fixed cost of one ``invoke``.
    With XNNPACK, a PAD that feeds the next convolution is fused into it, so the pair
    is timed as one (the PAD shows 0 ms, ``timed_with_next``; the convolution
    ``includes`` it). Cutting the graph also changes what the last op writes to (a
    model output instead of an internal tensor), so single ops carry a few
    microseconds of error, sometimes negative; per-op-type sums are more reliable.

    Args:
        model_path: the .tflite file.
        num_threads: interpreter threads.
        runs: timed invokes per truncated model.
        warmup: untimed invokes per truncated model.
        xnnpack: XNNPACK delegate on (the default interpreter) or off.

    Returns:
        {"ops": [...per op: index, op, output_shape, macs, ms, gmacs_per_s],
        "by_op": {op type: {count, ms, macs, share}}, "total_ms" (fastest invoke of the full model),
        "sum_ms" (sum of the per-op estimates), "macs", "threads", "xnnpack", "method"}.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    payload = Path(model_path).read_bytes()
    ops = count_macs(model_path)

    def median_invoke(content: bytes) -> float:
        interpreter = Interpreter(
            model_content=content, num_threads=int(num_threads), experimental_op_resolver_type=resolver
        )
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
        # The minimum, not the median: differences of per-prefix times must not carry
        # the preemptions of whatever else runs on the machine.
        return float(np.min(_time_calls(interpreter.invoke, warmup, runs)))

    # XNNPACK folds a PAD into the convolution that reads it; a model cut right after the
    # PAD would time an unfused PAD, so PAD and its consumer are timed together.
    fused = {
        k
        for k in range(len(ops) - 1)
        if xnnpack and ops[k]["op"] == "PAD" and ops[k]["outputs"][0] in ops[k + 1]["inputs"]
    }
    cuts = [k for k in range(len(ops)) if k not in fused]
    cumulative = dict(zip(cuts, (median_invoke(p) for p in _prefix_models(payload, cuts))))
    total = median_invoke(payload)
    previous = 0.0
    for k, op in enumerate(ops):
        if k in fused:
            op["ms"], op["gmacs_per_s"], op["timed_with_next"] = 0.0, None, True
            continue
        op["ms"] = round(cumulative[k] - previous, 5)
        op["gmacs_per_s"] = round(op["macs"] / (op["ms"] * 1e6), 2) if op["macs"] and op["ms"] > 0 else None
        if k - 1 in fused:
            op["includes"] = ops[k - 1]["op"]
        previous = cumulative[k]
    by_op: dict[str, dict[str, Any]] = {}
    for op in ops:
        agg = by_op.setdefault(op["op"], {"count": 0, "ms": 0.0, "macs": 0})
        agg["count"] += 1
        agg["ms"] += op["ms"]
        agg["macs"] += op["macs"]
    sum_ms = sum(op["ms"] for op in ops)
    for agg in by_op.values():
        agg["ms"] = round(agg["ms"], 4)
        agg["share"] = round(agg["ms"] / sum_ms, 3) if sum_ms > 0 else None
        agg["gmacs_per_s"] = round(agg["macs"] / (agg["ms"] * 1e6), 2) if agg["macs"] and agg["ms"] > 0 else None
    return {
        "model": str(model_path),
        "threads": int(num_threads),
        "xnnpack": bool(xnnpack),
        "runs": int(runs),
        "method": "fastest invoke of the model cut after op k minus that of the model cut after op k-1, ai_edge_litert",
        "total_ms": round(total, 4),
        "sum_ms": round(sum_ms, 4),
        "macs": int(sum(op["macs"] for op in ops)),
        "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]["ms"])),
        "ops": ops,
    }


def compute_bound(profile: dict[str, Any], system: dict[str, Any], measured_ms: float | None = None) -> dict[str, Any]:
    """How far an int8 model's time is from what the CPU could do on its MACs.

    Args:
        profile: from `profile_tflite_ops`.
        system: from `system_info` (clock, flags, cores).
        measured_ms: the model's batch-1 time to compare (default: the profile's total).

    Returns:
        macs, measured ms, achieved GMAC/s; ``isa_peak_gmacs_per_s`` = cores used x clock x
        int8 MACs/cycle of the widest dot-product instruction (an assumption, stated in
        ``isa_assumption``) and the time that peak would take; ``best_op_gmacs_per_s`` = the
        fastest op's measured rate among the ops holding >= 2% of the MACs and >= 2% of the
        time, and the time the whole model would take at that rate; ``conv_gmacs_per_s`` =
        the rate of all CONV_2D ops together and the time of the model at that rate.
    """
    ms = float(measured_ms if measured_ms is not None else profile["total_ms"])
    macs = int(profile["macs"])
    achieved = macs / (ms * 1e6) if ms > 0 else None
    flags = set(system.get("cpu_flags") or [])
    isa = next((f for f in INT8_MACS_PER_CYCLE if f in flags), None)
    per_cycle = INT8_MACS_PER_CYCLE.get(isa, 16)
    cores = min(int(profile["threads"]), int(system.get("cpus_available") or 1))
    ghz = (system.get("cpu_mhz") or 0) / 1000
    peak = cores * ghz * per_cycle if ghz else None
    # Per-op times are differences of medians: only ops well above the noise count.
    floor = max(0.003, 0.02 * float(profile["sum_ms"]))
    big = [op for op in profile["ops"] if op["macs"] >= 0.02 * macs and op.get("gmacs_per_s") and op["ms"] >= floor]
    best = max((op["gmacs_per_s"] for op in big), default=None)
    conv = profile["by_op"].get("CONV_2D", {})
    conv_rate = conv.get("gmacs_per_s")
    return {
        "macs": macs,
        "threads": int(profile["threads"]),
        "measured_ms": round(ms, 4),
        "achieved_gmacs_per_s": round(achieved, 2) if achieved else None,
        "isa_assumption": f"{per_cycle} int8 MACs/cycle/core ({isa or 'no VNNI/AVX2'}), "
        f"{cores} core(s) at {ghz:.2f} GHz",
        "isa_peak_gmacs_per_s": round(peak, 1) if peak else None,
        "isa_bound_ms": round(macs / (peak * 1e6), 4) if peak else None,
        "fraction_of_isa_peak": round(achieved / peak, 3) if peak and achieved else None,
        "best_op_gmacs_per_s": best,
        "best_op_bound_ms": round(macs / (best * 1e6), 4) if best else None,
        "conv_gmacs_per_s": conv_rate,
        "conv_rate_bound_ms": round(macs / (conv_rate * 1e6), 4) if conv_rate else None,
    }


# ---------------------------------------------------------------- whole frame
def measure_frame(
    model_path: str | os.PathLike,
    num_threads: int = 2,
    runs: int = 200,
    warmup: int = 10,
    frame: np.ndarray | None = None,
    use_detector: bool = True,
) -> dict[str, Any]:
    """Time of one BGR frame with one face: detection + crop + preprocess + int8 pose.

    Args:
        model_path: the head-pose .tflite.
        num_threads: threads of the pose interpreter and of the detector.
        runs, warmup: timed and untimed frames.
        frame: uint8 BGR image; None builds a 640x480 frame from the packaged face
            image (``assets/astronaut.jpg``, resized to 480x480 and padded to 640
            wide), or random pixels if that asset is absent.
        use_detector: detect the face with `detect.FaceDetector` (BlazeFace) when that
            module and its model are present; otherwise a fixed box is used and the
            result says that detection was not timed.

    Returns:
        p50/p90 ms per stage (detect, crop_preprocess, pose) and in total, the frame
        size, whether a face was detected and what was timed.
    """
    from qa_headpose.preprocess import crop_face, to_model_input
    from qa_headpose.runtime import TFLiteRunner

    runner = TFLiteRunner(model_path, num_threads=num_threads)
    frame = _default_frame() if frame is None else frame
    h, w = frame.shape[:2]
    fixed_box = np.array([w * 0.4, h * 0.3, w * 0.6, h * 0.6], np.float32)
    detector, why = None, "detection not timed: use_detector=False"
    if use_detector:
        try:
            from qa_headpose.detect import FaceDetector, crop_box_from_detection

            face_detector = FaceDetector(num_threads=num_threads)

            def detector(image: np.ndarray) -> list[np.ndarray]:
                return [crop_box_from_detection(d.box) for d in face_detector.detect(image, max_faces=1)]

            why = f"BlazeFace short-range ({face_detector.model_path.name}) + box mapping"
        except (ImportError, OSError, ValueError) as exc:
            why = f"detection not timed: no detector ({exc})"
    found = bool(detector(frame)) if detector is not None else False
    stages: dict[str, list[float]] = {"detect": [], "crop_preprocess": [], "pose": [], "total": []}
    clock = time.perf_counter_ns
    for i in range(warmup + runs):
        t0 = clock()
        boxes = detector(frame) if detector is not None else []
        t1 = clock()
        box = boxes[0] if len(boxes) else fixed_box
        x = to_model_input(crop_face(frame, box, runner.input_size), runner.input_size)
        t2 = clock()
        runner(x)
        t3 = clock()
        if i >= warmup:
            for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                stages[name].append(value / 1e6)
    out: dict[str, Any] = {
        "frame": f"{w}x{h}",
        "threads": int(num_threads),
        "runs": int(runs),
        "detector": why,
        "face_detected": found,
    }
    for name, values in stages.items():
        out[f"{name}_p50_ms"] = round(float(np.percentile(values, 50)), 4)
        out[f"{name}_p90_ms"] = round(float(np.percentile(values, 90)), 4)
    return out


def _default_frame(width: int = 640, height: int = 480) -> np.ndarray:
    import cv2

    asset = Path(__file__).with_name("assets") / "astronaut.jpg"
    image = cv2.imread(str(asset)) if asset.is_file() else None
    if image is None:
        return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    side = min(width, height)
    face = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    frame = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - side) // 2, (height - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = face
    return frame


# ---------------------------------------------------------------- formatting
_COLUMNS = (
    ("model", "model"),
    ("runtime", "runtime"),
    ("xnn", "xnnpack"),
    ("thr", "threads"),
    ("MB", "size"),
    ("min ms", "latency_min_ms"),
    ("p50 ms", "latency_p50_ms"),
    ("p90 ms", "latency_p90_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("e2e p50", "e2e_p50_ms"),
)


def _cells(r: BenchmarkResult, batch_sizes: Sequence[str], with_mae: bool) -> list[str]:
    cells = [
        r.model,
        r.runtime,
        xnnpack_label(r.xnnpack),
        str(r.threads),
        f"{r.file_size_bytes / 1e6:.2f}",
        f"{r.latency_min_ms:.3f}",
        f"{r.latency_p50_ms:.3f}",
        f"{r.latency_p90_ms:.3f}",
        f"{r.latency_p99_ms:.3f}",
        f"{r.e2e_p50_ms:.3f}",
    ]
    cells += [f"{r.throughput_fps[b]:.0f}" if b in r.throughput_fps else "" for b in batch_sizes]
    cells.append(f"{r.peak_rss_mb:.0f}")
    if with_mae:
        m = r.mae
        cells.append(f"{m['yaw']:.2f} / {m['pitch']:.2f} / {m['roll']:.2f} / {m['mean']:.2f}" if m else "")
    return cells


def _header(report: BenchmarkReport) -> tuple[list[str], list[str], bool]:
    batch_sizes = [str(b) for b in report.config.get("batch_sizes", [])]
    with_mae = any(r.mae for r in report.results)
    head = [c[0] for c in _COLUMNS] + [f"faces/s b{b}" for b in batch_sizes] + ["RSS MB"]
    if with_mae:
        head.append("MAE y/p/r/mean")
    return head, batch_sizes, with_mae


def format_table(report: BenchmarkReport) -> str:
    """The rows as an aligned plain-text table."""
    head, batch_sizes, with_mae = _header(report)
    rows = [head] + [_cells(r, batch_sizes, with_mae) for r in report.results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(report: BenchmarkReport) -> str:
    """A markdown section: machine, command, the table, and the notes the numbers need."""
    s = report.system
    head, batch_sizes, with_mae = _header(report)
    libs = ", ".join(f"{k} {v}" for k, v in s["libraries"].items() if v)
    lines = [
        f"Machine: {s['cpu_model']}, {s['cpus_available']} of {s['cpu_count']} cores available, "
        f"{(s['cpu_mhz'] or 0) / 1000:.2f} GHz, {', '.join(s['cpu_flags'])}; {s['platform']}; Python {s['python']}.",
        f"Libraries: {libs}.",
        f"Load average at start / end: {_loads(s.get('load_average_start'))} / "
        f"{_loads(s.get('load_average_end'))}; measured {s['date']}.",
        "",
    ]
    if report.command:
        lines += ["```", report.command, "```", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
    for r in report.results:
        lines.append("| " + " | ".join(_cells(r, batch_sizes, with_mae)) + " |")
    notes = sorted({r.note for r in report.results if r.note})
    lines += [
        "",
        "min/p50/p90/p99: batch-1 inference on a prepared input (min: the best single call, the least "
        "disturbed by other processes); e2e p50: float pixels in, degrees out "
        "(int8 quantize/dequantize included); faces/s: batch b / median call time over "
        f"{report.config.get('throughput_seconds')} s of calls (the JSON also has them against wall time); "
        "RSS: peak of the process that measured that model "
        "on that runtime; MB: model file (Keras: the float weights .h5).",
    ]
    lines += [f"Note: {n}." for n in notes]
    for item in report.skipped:
        lines.append(f"Skipped: {item['model']} on {item['runtime']}: {item['reason']}.")
    for f in report.frame or []:
        lines += [
            "",
            f"Whole frame {f['frame']}, {f['threads']} thread(s), {f['detector']}, face found: {f['face_detected']}: "
            f"p50 {f['total_p50_ms']:.3f} ms (p90 {f['total_p90_ms']:.3f}) = detect {f['detect_p50_ms']:.3f} + "
            f"crop/preprocess {f['crop_preprocess_p50_ms']:.3f} + pose {f['pose_p50_ms']:.3f} ms (stage p50s).",
        ]
    for name, prof in (report.profile or {}).items():
        lines += ["", *_profile_markdown(name, prof)]
    return "\n".join(lines) + "\n"


def _profile_markdown(name: str, prof: dict[str, Any]) -> list[str]:
    b = prof.get("bound") or {}
    lines = [
        f"Per-op profile of {name} ({prof['threads']} thread(s), XNNPACK {xnnpack_label(prof['xnnpack'])}; "
        f"{prof['method']}): full model {prof['total_ms']:.3f} ms, sum of ops {prof['sum_ms']:.3f} ms, "
        f"{prof['macs'] / 1e6:.1f} M MACs.",
        "",
        "| op | count | ms | share | GMAC/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, v in prof["by_op"].items():
        rate = f"{v['gmacs_per_s']:.1f}" if v.get("gmacs_per_s") else ""
        share = f"{v['share']:.0%}" if v.get("share") is not None else ""
        lines.append(f"| {op} | {v['count']} | {v['ms']:.4f} | {share} | {rate} |")
    if b:
        lines += [
            "",
            f"Compute bound: {b['achieved_gmacs_per_s']} GMAC/s achieved = {b['fraction_of_isa_peak']} of the ISA peak "
            f"{b['isa_peak_gmacs_per_s']} GMAC/s ({b['isa_assumption']}; bound {b['isa_bound_ms']} ms); the fastest "
            f"large op runs at {b['best_op_gmacs_per_s']} GMAC/s (bound {b['best_op_bound_ms']} ms), all CONV_2D "
            f"together at {b['conv_gmacs_per_s']} GMAC/s (bound {b['conv_rate_bound_ms']} ms).",
        ]
    return lines


def _loads(values: list[float] | None) -> str:
    return "n/a" if not values else " ".join(f"{v:.2f}" for v in values)


def plot_latency(report: BenchmarkReport, path: str | os.PathLike) -> None:
    """PNG of batch-1 p50 latency vs threads, one line per (model, runtime, XNNPACK).

    Raises:
        ImportError: if matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("The plot needs matplotlib: `pip install matplotlib`") from None
    lines: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for r in report.results:
        lines.setdefault(r.key(), []).append((r.threads, r.latency_p50_ms))
    fig, ax = plt.subplots(figsize=(11, 5.5))
    models = sorted({key[0] for key in lines})
    styles = sorted({key[1:] for key in lines})
    colours = plt.get_cmap("tab10")
    dashes = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
    markers = "osD^v<>"
    for (model, runtime, xnn), points in sorted(lines.items()):
        points.sort()
        label = f"{model} {runtime}" + (f" xnnpack {xnn}" if xnn != "-" else "")
        style = styles.index((runtime, xnn))
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color=colours(models.index(model) % 10),
            linestyle=dashes[style % len(dashes)],
            marker=markers[style % len(markers)],
            label=label,
        )
    ax.set_xlabel("threads")
    ax.set_ylabel("batch-1 latency p50 (ms)")
    ax.set_yscale("log")
    ax.set_xticks(sorted({r.threads for r in report.results}))
    ax.set_title(f"{report.system['cpu_model']}, {report.system['cpus_available']} cores")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    tmp = Path(path).with_name(f".tmp{os.getpid()}.{Path(path).name}")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def write_report_json(report: BenchmarkReport, path: str | os.PathLike) -> None:
    """Writes the report as JSON (atomically)."""
    from qa_headpose.config import write_json_atomic

    write_json_atomic(path, report.to_dict())
