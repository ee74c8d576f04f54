"""Benchmarks: latency, throughput, memory and accuracy of the models on each runtime; training throughput.

Modules, one concern each (none imports TensorFlow; the worker processes that need it do):

- `models`: what to measure (`ModelSpec`; files, run folders, the shipped models, your newest export).
- `engines`: one model on one runtime, called like `TFLiteRunner` (LiteRT *is* `TFLiteRunner`).
- `worker`: the fresh process that measures one model per runtime, and its peak RSS.
- `run`: `BenchmarkConfig`, `run_benchmark` -> `BenchmarkReport` of `BenchmarkResult` rows (`results`).
- `system`: the machine (CPU, flags, library versions) each report records.
- `profile`: MACs per op, per-op time on LiteRT, the compute bound.
- `frame`: whole frames through `HeadPoseEstimator.predict_image`; N threads sharing one estimator.
- `report`: table, markdown, summary, plot, JSON.
- `pipeline`: the training input pipeline and train steps (TensorFlow; import it explicitly).

The names below are the public API, e.g. ``bench.run_benchmark(bench.default_models())``.
"""

from __future__ import annotations

from qa_headpose.bench.frame import default_frame, measure_callers, measure_frame
from qa_headpose.bench.models import (
    ModelSpec,
    available_runtimes,
    default_models,
    find_models,
    model_spec,
    newest_run,
    run_export,
)
from qa_headpose.bench.profile import compute_bound, count_macs, profile_tflite_ops
from qa_headpose.bench.report import (
    format_markdown,
    format_summary,
    format_table,
    plot_latency,
    summarize,
    write_report_json,
)
from qa_headpose.bench.results import BenchmarkReport, BenchmarkResult
from qa_headpose.bench.run import RUNTIMES, BenchmarkConfig, count_rows, run_benchmark
from qa_headpose.bench.system import system_info
from qa_headpose.bench.worker import BenchmarkError

__all__ = [
    "RUNTIMES",
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkReport",
    "BenchmarkResult",
    "ModelSpec",
    "available_runtimes",
    "compute_bound",
    "count_macs",
    "count_rows",
    "default_frame",
    "default_models",
    "find_models",
    "format_markdown",
    "format_summary",
    "format_table",
    "measure_callers",
    "measure_frame",
    "model_spec",
    "newest_run",
    "plot_latency",
    "profile_tflite_ops",
    "run_benchmark",
    "run_export",
    "summarize",
    "system_info",
    "write_report_json",
]
