"""The worker: a fresh Python process that measures models on one runtime, and reports its peak RSS.

`run_worker` starts ``python -c "...worker import main; main()" job.json`` and reads
one line per measured row from its stdout as the row is done (for the progress bar);
the worker's stderr goes to a file, whose tail is the error message if it fails. A
fresh process per (model, runtime) keeps each peak RSS its own and TensorFlow out of
every process but the tf.lite and Keras workers. All Keras models of a run share one
worker per thread count (TF fixes its thread pools at start-up, and importing it is
most of a Keras worker's time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from qa_headpose.bench.engines import Engine, EngineSkip
from qa_headpose.bench.models import ModelSpec
from qa_headpose.bench.timing import time_calls

_ROW, _SKIP = "@qa-headpose-bench-row ", "@qa-headpose-bench-skip "


class BenchmarkError(RuntimeError):
    """A worker process that failed in a way that is not a property of the model or runtime."""


def run_worker(
    job: dict[str, Any],
    tmp: Path,
    on_row: Callable[[dict[str, Any]], None],
    on_skip: Callable[[str, str], None],
) -> None:
    """Runs one worker job in a fresh process.

    Args:
        job: the specs, runtime and settings (see `main`).
        tmp: a folder for the job file and the worker's stderr.
        on_row: called with each row (a `BenchmarkResult` dict) as soon as it is measured.
        on_skip: called with (model name, reason) for a model the runtime cannot load.

    Raises:
        BenchmarkError: if the worker exits with an error.
    """
    job_path, err_path = tmp / "job.json", tmp / "worker.stderr"
    job_path.write_text(json.dumps(job))
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    code = "from qa_headpose.bench.worker import main; main()"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(job_path)], env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                if line.startswith(_ROW):
                    on_row(json.loads(line[len(_ROW) :]))
                elif line.startswith(_SKIP):
                    skip = json.loads(line[len(_SKIP) :])
                    on_skip(skip["model"], skip["reason"])
        code = proc.wait()
    if code != 0:
        tail = "\n".join(err_path.read_text(errors="replace").strip().splitlines()[-15:])
        names = ", ".join(s["name"] for s in job["specs"])
        raise BenchmarkError(f"benchmark worker for {names} on {job['runtime']} failed (exit {code}):\n{tail}")


def peak_rss_mb() -> float:
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


# ---------------------------------------------------------------- in the worker process
def main() -> None:
    """Entry point of a worker process: ``python -c ... job.json``; rows go to stdout, one line each.

    The job: ``specs`` (`ModelSpec` dicts), ``runtime`` ("litert", "tf.lite",
    "onnxruntime" or "keras" with ``keras_modes``), ``threads``, ``xnnpack``,
    ``batch_sizes``, ``warmup``, ``runs``, ``latency_seconds``, ``throughput_seconds``,
    ``eval_batch`` and ``eval`` ({input side: {"crops", "poses"} .npy paths} or None).
    """
    job = json.loads(Path(sys.argv[1]).read_text())
    _import_runtime(job["runtime"], job["threads"][0])
    baseline = peak_rss_mb()
    for spec_dict in job["specs"]:
        spec = ModelSpec(**spec_dict)
        try:
            for row in _measure_spec(spec, job):
                row["peak_rss_mb"] = round(peak_rss_mb(), 1)
                row["baseline_rss_mb"] = round(baseline, 1)
                print(_ROW + json.dumps(row), flush=True)
        except EngineSkip as exc:
            print(_SKIP + json.dumps({"model": spec.name, "reason": str(exc)}), flush=True)


def _import_runtime(runtime: str, threads: int) -> None:
    """Imports the runtime before the baseline RSS (and fixes TF's thread pools for Keras)."""
    if runtime == "litert":
        import ai_edge_litert.interpreter  # noqa: F401
    elif runtime == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        from qa_headpose.training._keras import tf

        if runtime == "keras":
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)


def _eval_data(job: dict[str, Any], size: int) -> tuple[np.ndarray, np.ndarray] | None:
    files = (job.get("eval") or {}).get(str(size))
    return (np.load(files["crops"]), np.load(files["poses"])) if files else None


def _measure_spec(spec: ModelSpec, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from qa_headpose.bench import engines

    if spec.format == "keras":
        start = time.perf_counter()
        model = engines.load_keras_model(spec.path)
        load_seconds = time.perf_counter() - start
        threads = job["threads"][0]
        data = _eval_data(job, int(model.input_shape[1]))
        mae = None
        if data is not None:
            mae = accuracy(engines.keras_engine(model, "keras", spec.path, load_seconds), data, job["eval_batch"])
        for mode in job["keras_modes"]:
            engine = engines.keras_engine(model, mode, spec.path, load_seconds)
            yield {**measure_engine(spec, engine, job, threads), "mae": mae}
        return
    for xnnpack in job["xnnpack"] if spec.format == "tflite" else [None]:
        mae = None
        for i, threads in enumerate(job["threads"]):
            if spec.format == "tflite":
                engine = engines.tflite_engine(spec.path, job["runtime"], threads, xnnpack)
            else:
                engine = engines.onnx_engine(spec.path, threads)
            if i == 0:
                data = _eval_data(job, engine.input_size)
                mae = accuracy(engine, data, job["eval_batch"]) if data is not None else None
            yield {**measure_engine(spec, engine, job, threads), "mae": mae}


def _sample_input(size: int, batch: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def measure_engine(spec: ModelSpec, engine: Engine, job: dict[str, Any], threads: int) -> dict[str, Any]:
    """Latency, end-to-end latency and throughput of one engine (the fields of a `BenchmarkResult` row)."""
    from qa_headpose.inference.preprocess import to_model_input

    size = engine.input_size
    x1 = _sample_input(size, 1)
    limit = job.get("latency_seconds")
    ms = time_calls(lambda: engine(x1), job["warmup"], job["runs"], limit)
    crop = np.random.default_rng(1).integers(0, 256, (2 * size, 2 * size, 3), dtype=np.uint8)
    e2e = time_calls(
        lambda: engine(to_model_input(crop, size)),
        min(job["warmup"], 3),
        max(3, job["runs"] // 2),
        None if limit is None else limit / 2,
    )
    throughput, throughput_wall = {}, {}
    clock = time.perf_counter_ns
    for batch in job["batch_sizes"]:
        xb = _sample_input(size, batch)
        for _ in range(min(3, max(1, job["warmup"]))):
            engine(xb)
        calls: list[int] = []
        start = clock()
        while len(calls) < 3 or (clock() - start) / 1e9 < job["throughput_seconds"]:
            t0 = clock()
            engine(xb)
            calls.append(clock() - t0)
        elapsed_s = (clock() - start) / 1e9
        throughput[str(batch)] = round(batch * 1e9 / float(np.median(calls)), 1)
        throughput_wall[str(batch)] = round(len(calls) * batch / elapsed_s, 1)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "model": spec.name,
        "variant": spec.variant,
        "format": spec.format,
        "path": spec.path,
        "family": spec.family,
        "runtime": engine.runtime,
        "threads": int(threads),
        "xnnpack": engine.xnnpack,
        "input_size": size,
        "input_dtype": engine.input_dtype.name,
        "file_size_bytes": int(engine.file_size),
        "warmup": int(job["warmup"]),
        "runs": int(len(ms)),
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


def accuracy(engine: Engine, data: tuple[np.ndarray, np.ndarray], batch: int) -> dict[str, Any]:
    """Per-angle MAE (degrees) of an engine on (crops float32 (n, S, S, 3), poses (n, 3) degrees), and yaw MAE by
    |yaw| band (``yaw_by_band``); an angle the data does not annotate (Pointing'04's roll) is NaN."""
    crops, poses = data
    out = []
    for i in range(0, len(crops), batch):
        chunk = crops[i : i + batch]
        if len(chunk) < batch:  # pad the last batch to keep one input shape
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)])
        out.append(engine(chunk))
    pred = np.concatenate(out)[: len(crops)]
    from qa_headpose.evaluation import bands

    result = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in bands.scored_mae(pred, poses).items()}
    result["yaw_by_band"] = {b["band"]: round(b["yaw"], 4) for b in bands.yaw_bands(pred, poses)}
    return result
