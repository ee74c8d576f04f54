"""`run_benchmark`: every model on every requested runtime, one fresh worker process each, into a report.

What one row (`BenchmarkResult`) holds, for one (model, runtime, threads, XNNPACK):

- latency at batch 1: ``warmup`` untimed calls, then up to ``runs`` calls (or
  ``latency_seconds`` of them) timed one by one with `time.perf_counter_ns`;
  p50/p90/p99/mean/min in ms. The timed call is what an application calls, on an
  already preprocessed float32 input: `TFLiteRunner` (quantize + invoke +
  dequantize) for LiteRT, `OnnxRunner`, or the Keras model (`engines`).
- ``e2e_p50_ms``: the same from a uint8 face crop (twice the input side):
  `preprocess.to_model_input` + the call, i.e. `HeadPoseEstimator.predict`'s path.
- throughput in faces/s at each batch size: batch / median call time over calls
  repeated for at least ``throughput_seconds``, and against wall time (``throughput_wall_fps``).
- file size, the worker's peak RSS, and per-angle MAE when data is given.

Nothing here prints; `cli/benchmark.py` formats and writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from qa_headpose.bench.models import ModelSpec, available_runtimes, keras_input_size
from qa_headpose.bench.results import BenchmarkReport, BenchmarkResult, xnnpack_label
from qa_headpose.bench.system import LIBRARIES, system_info  # noqa: F401 (this module's names before the split)
from qa_headpose.bench.worker import run_worker

# Config runtime names; "keras" is ``predict_on_batch`` (row runtime "keras.predict_on_batch").
RUNTIMES = ("litert", "tf.lite", "onnxruntime", "keras", "keras.call")
DEFAULT_RUNTIMES = ("litert", "keras")
RUNTIME_OF_FORMAT = {"tflite": ("litert", "tf.lite"), "onnx": ("onnxruntime",), "keras": ("keras", "keras.call")}


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure; the defaults are the quick default run of ``qa-headpose benchmark``.

    Fields:
        threads: thread counts to sweep (interpreter / onnxruntime intra-op / TF intra-op threads).
        batch_sizes: batch sizes of the throughput measurement.
        warmup: untimed calls before the timed ones.
        runs: most timed batch-1 calls for the latency percentiles.
        latency_seconds: stop the timed batch-1 calls after this long (at least 10
            calls), so a slow model (Keras) does not take ``runs`` x its latency; None: all ``runs``.
        throughput_seconds: minimum wall time of the calls at each batch size.
        runtimes: any of `RUNTIMES`; each applies to the formats it can run, and those
            not installed are skipped.
        xnnpack: XNNPACK settings of the TFLite interpreters (True: the default delegate;
            False: builtin kernels only).
        eval_batch: batch size of the accuracy pass.
    """

    threads: tuple[int, ...] = (1,)
    batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 5
    runs: int = 100
    latency_seconds: float | None = 1.0
    throughput_seconds: float = 0.25
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    xnnpack: tuple[bool, ...] = (True,)
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
        if self.latency_seconds is not None and self.latency_seconds <= 0:
            raise ValueError(f"latency_seconds must be > 0 or None. Received: {self.latency_seconds}")
        unknown = set(self.runtimes) - set(RUNTIMES)
        if unknown or not self.runtimes:
            raise ValueError(f"runtimes must be among {RUNTIMES}. Received: runtimes={self.runtimes}")
        if not self.xnnpack:
            raise ValueError("xnnpack needs at least one setting (True and/or False).")


def _jobs(models: Sequence[ModelSpec], cfg: BenchmarkConfig) -> list[tuple[str, list[ModelSpec], list[int], list[str]]]:
    """(runtime, specs, threads, Keras modes) of each worker, in order.

    One worker per (model, runtime); all Keras models share one per thread count (TF
    fixes its thread pools at start-up, and importing it is most of a Keras worker's time).
    """
    jobs = []
    for spec in models:
        if spec.format == "keras":
            continue
        for runtime in RUNTIME_OF_FORMAT[spec.format]:
            if runtime in cfg.runtimes:
                jobs.append((runtime, [spec], list(cfg.threads), []))
    keras = [s for s in models if s.format == "keras"]
    modes = [m for m in RUNTIME_OF_FORMAT["keras"] if m in cfg.runtimes]
    if keras and modes:
        jobs += [("keras", keras, [t], modes) for t in cfg.threads]
    return jobs


def _rows_of(runtime: str, specs: list[ModelSpec], threads: list[int], modes: list[str], cfg: BenchmarkConfig) -> int:
    """Rows one worker measures."""
    if runtime == "keras":
        per_thread = len(modes)
    elif runtime == "onnxruntime":
        per_thread = 1
    else:
        per_thread = len(cfg.xnnpack)
    return len(specs) * len(threads) * per_thread


def count_rows(models: Sequence[ModelSpec], cfg: BenchmarkConfig) -> int:
    """How many rows `run_benchmark` measures (for a progress bar), runtimes not installed left out."""
    installed = available_runtimes()
    return sum(
        _rows_of(runtime, specs, threads, modes, cfg)
        for runtime, specs, threads, modes in _jobs(models, cfg)
        if installed[runtime]
    )


EvalData = tuple[np.ndarray, np.ndarray] | Callable[[int], tuple[np.ndarray, np.ndarray]]


def run_benchmark(
    models: Sequence[ModelSpec],
    cfg: BenchmarkConfig = BenchmarkConfig(),
    eval_data: EvalData | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> BenchmarkReport:
    """Measures every model on every requested runtime that can run it.

    Args:
        models: the models (`models.find_models`, `models.default_models`, `models.model_spec`).
        cfg: what to measure.
        eval_data: for accuracy, (crops float32 (n, S, S, 3) in [0, 255], poses (n, 3)
            degrees), or a function of the input side S returning them (models of
            different sizes); None for no accuracy.
        progress: called with (what is measured, rows done): with 0 when a worker
            starts, with 1 after each row, with the rows left out when a model is skipped.

    Returns:
        A `BenchmarkReport`; pairs that could not run are listed in ``skipped`` with the reason.

    Raises:
        ValueError: for no models, or eval data of the wrong shape.
        BenchmarkError: if a worker process fails.
    """
    if not models:
        raise ValueError("No model to benchmark.")
    installed = available_runtimes()
    system = system_info()
    results: list[BenchmarkResult] = []
    skipped: list[dict[str, str]] = []
    notify = progress or (lambda label, rows: None)
    with tempfile.TemporaryDirectory(prefix="qa_headpose_bench_") as tmp:
        data_files: dict[int, dict[str, str]] = {}
        keras_mae: dict[tuple[str, str], Any] = {}
        for runtime, specs, threads, modes in _jobs(models, cfg):
            if not installed[runtime]:
                names = [runtime] if runtime != "keras" else modes
                skipped += [
                    {"model": s.name, "runtime": r, "reason": f"{r} is not installed"} for s in specs for r in names
                ]
                continue
            evaluation = None
            if eval_data is not None and not (runtime == "keras" and keras_mae):
                evaluation = {}
                for spec in specs:
                    size = _input_size(spec)
                    if size not in data_files:
                        data_files[size] = _write_eval_data(eval_data, size, Path(tmp))
                    evaluation[str(size)] = data_files[size]
            label = f"{', '.join(s.name for s in specs)} on {runtime}" + (
                f", {threads[0]} thread(s)" if runtime == "keras" else ""
            )
            notify(label, 0)
            job = {
                "specs": [dataclasses.asdict(s) for s in specs],
                "runtime": runtime,
                "keras_modes": modes,
                "threads": threads,
                "xnnpack": list(cfg.xnnpack),
                "batch_sizes": list(cfg.batch_sizes),
                "warmup": cfg.warmup,
                "runs": cfg.runs,
                "latency_seconds": cfg.latency_seconds,
                "throughput_seconds": cfg.throughput_seconds,
                "eval_batch": cfg.eval_batch,
                "eval": evaluation,
            }
            done: dict[str, int] = {}

            def on_row(row: dict[str, Any]) -> None:
                if row["runtime"].startswith("keras"):  # one worker per thread count: MAE of the first
                    mae_key = (row["model"], row["runtime"])
                    if row["mae"] is not None:
                        keras_mae[mae_key] = row["mae"]
                    else:
                        row["mae"] = keras_mae.get(mae_key)
                results.append(BenchmarkResult(**row))
                done[row["model"]] = done.get(row["model"], 0) + 1
                notify(f"{row['model']} on {row['runtime']}, {row['threads']} thread(s)", 1)

            def on_skip(name: str, reason: str) -> None:
                skipped.append({"model": name, "runtime": runtime, "reason": reason})
                notify(
                    f"skipped {name} on {runtime}",
                    _rows_of(runtime, [specs[0]], threads, modes, cfg) - done.get(name, 0),
                )

            run_worker(job, Path(tmp), on_row, on_skip)
    system["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    order = {spec.name: i for i, spec in enumerate(models)}
    results.sort(key=lambda r: (order.get(r.model, len(order)), r.runtime, xnnpack_label(r.xnnpack), r.threads))
    config = {**dataclasses.asdict(cfg), "models": [dataclasses.asdict(m) for m in models]}
    return BenchmarkReport(system, config, results, skipped)


def _input_size(spec: ModelSpec) -> int:
    if spec.format == "keras":
        return keras_input_size(spec)
    meta = Path(spec.path).with_suffix(".json")
    if meta.is_file():
        try:
            size = json.loads(meta.read_text()).get("input_size")
            if size:
                return int(size)
        except (ValueError, AttributeError):
            pass
    if spec.format == "onnx":
        from qa_headpose.training.onnx_export import OnnxRunner

        return OnnxRunner(spec.path).input_size
    from qa_headpose.inference.runtime import TFLiteRunner

    return TFLiteRunner(spec.path, max_concurrency=1).input_size


def _write_eval_data(eval_data: EvalData, size: int, tmp: Path) -> dict[str, str]:
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
