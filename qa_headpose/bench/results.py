"""What a benchmark run returns: `BenchmarkResult` rows in a `BenchmarkReport`. No TF.

`run.run_benchmark` fills them, `report` formats them, and ``--results-file`` writes
them as JSON (``BenchmarkReport.to_dict``).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class BenchmarkResult:
    """One measured row: a model on a runtime with a thread count and XNNPACK setting.

    Fields:
        model, variant, format, path, family: the `ModelSpec`.
        runtime: "litert", "tf.lite", "onnxruntime", "keras.predict_on_batch" or "keras.call".
        threads: threads of the interpreter / session / TF intra-op pool.
        xnnpack: XNNPACK delegate on/off for TFLite rows; None where it does not apply.
        input_size, input_dtype: the model input (side in pixels; dtype fed to the runtime).
        file_size_bytes: size of the model file (the float weights .h5 for Keras rows).
        warmup, runs: untimed and timed batch-1 calls.
        latency_mean_ms, latency_min_ms, latency_p50_ms, latency_p90_ms, latency_p99_ms:
            batch-1 time of one call on a preprocessed float32 input, milliseconds.
        e2e_p50_ms: batch-1 median from a uint8 face crop (preprocessing included).
        throughput_fps: faces per second by batch size (keys are the batch sizes as strings):
            batch / median time of one call, over calls repeated for ``throughput_seconds``.
        throughput_wall_fps: the same calls counted against wall time (lower when other
            processes take the CPU: the two together show how busy the machine was).
        peak_rss_mb: peak resident memory (VmHWM, else ru_maxrss) of the worker process
            when this row was done, MiB (a Keras worker holds the Keras models measured before).
        baseline_rss_mb: the same worker's peak RSS after importing the runtime, before
            loading a model, MiB.
        load_seconds: time to create the interpreter/session/model.
        mae: per-angle MAE in degrees (yaw, pitch, roll, mean, count) or None without data;
            computed once per (model, runtime, XNNPACK) at the first thread count.
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
    family: str = ""

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
        profile: per-op profiles and compute bounds (`profile.profile_tflite_ops`), if asked.
        frame: whole-frame timings (`frame.measure_frame`), one per thread count, if asked.
        callers: faces/s with N threads sharing one estimator (`frame.measure_callers`), if asked.
        command: the command line that produced the report.
    """

    system: dict[str, Any]
    config: dict[str, Any]
    results: list[BenchmarkResult]
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    profile: dict[str, Any] | None = None
    frame: list[dict[str, Any]] | None = None
    callers: dict[str, Any] | None = None
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def xnnpack_label(value: bool | None) -> str:
    """'on', 'off' or '-' (not applicable)."""
    return "-" if value is None else ("on" if value else "off")
