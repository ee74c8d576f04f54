"""benchmark_tflite / qa-headpose benchmark on the tiny models: every field, positive and consistent numbers."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa_headpose import benchmark
from qa_headpose.cli import benchmark_main, main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--threads", "1", "--batch-sizes", "1,4", "--runs", "20", "--warmup", "2", "--throughput-seconds", "0.05"]
FIELDS = {f.name for f in dataclasses.fields(benchmark.BenchmarkResult)}


def check_row(row: dict) -> None:
    """The invariants every row must satisfy."""
    assert FIELDS <= set(row), FIELDS - set(row)
    for key in ("latency_min_ms", "latency_p50_ms", "latency_mean_ms", "e2e_p50_ms", "file_size_bytes"):
        assert row[key] > 0, (key, row)
    assert row["peak_rss_mb"] >= row["baseline_rss_mb"] > 0
    assert row["latency_min_ms"] <= row["latency_p50_ms"] <= row["latency_p90_ms"] <= row["latency_p99_ms"]
    assert row["threads"] >= 1 and row["runs"] >= 3 and row["input_size"] == 32
    assert set(row["throughput_fps"]) == {"1", "4"}
    assert all(v > 0 for v in row["throughput_fps"].values())
    # Batch-1 throughput and latency time the same call: faces/s ~ 1000 / p50 ms (two
    # separate medians of a few calls on a possibly busy machine, so only roughly equal;
    # a unit error would be 1000x).
    ratio = row["throughput_fps"]["1"] * row["latency_p50_ms"] / 1000
    assert 0.1 < ratio < 10, (ratio, row)
    # Wall-clock throughput counts the same calls plus whatever stalled them (a mean, not a median).
    assert set(row["throughput_wall_fps"]) == set(row["throughput_fps"])
    assert all(0 < row["throughput_wall_fps"][b] <= 5 * row["throughput_fps"][b] for b in row["throughput_fps"])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_tflite_models):
    """One CLI run on the three tiny .tflite models with ai_edge_litert, XNNPACK on and off."""
    out = tmp_path_factory.mktemp("bench")
    models = [str(tiny_tflite_models[v]) for v in ("int8", "float32", "dynamic")]
    args = ["--model", *models, *FAST, "--runtimes", "litert", "--xnnpack", "both"]
    args += [
        "--json",
        str(out / "b.json"),
        "--markdown",
        str(out / "b.md"),
        "--plot",
        str(out / "b.png"),
        "--profile",
        "--frame",
    ]
    code = benchmark_main(args)
    return code, out


def test_cli_writes_json_markdown_plot(cli_run):
    code, out = cli_run
    assert code == 0
    report = json.loads((out / "b.json").read_text())
    assert {"system", "config", "results", "skipped", "profile", "frame", "command"} <= set(report)
    system = report["system"]
    assert system["cpu_count"] >= 1 and system["cpu_model"] and system["libraries"]["ai-edge-litert"]
    rows = report["results"]
    assert len(rows) == 3 * 2  # models x XNNPACK on/off, one thread count
    assert {(r["variant"], r["xnnpack"]) for r in rows} == {
        (v, x) for v in ("int8", "float32", "dynamic") for x in (True, False)
    }
    for row in rows:
        check_row(row)
        assert row["runtime"] == "litert" and row["mae"] is None
    int8 = next(r for r in rows if r["variant"] == "int8")
    assert int8["input_dtype"] == "int8"
    markdown = (out / "b.md").read_text()
    assert len([line for line in markdown.splitlines() if line.startswith("| headpose_")]) == len(rows)
    assert "Per-op profile of headpose_int8.tflite@1" in markdown and "Whole frame 640x480" in markdown
    assert (out / "b.png").read_bytes()[:4] == b"\x89PNG"
    (frame,) = report["frame"]
    assert frame["threads"] == 1 and frame["total_p50_ms"] >= frame["pose_p50_ms"] > 0


def test_profile_and_compute_bound(cli_run):
    _, out = cli_run
    profile = json.loads((out / "b.json").read_text())["profile"]
    (name, prof), *_ = profile.items()
    assert name.startswith("headpose_int8.tflite@")
    assert prof["macs"] > 0 and prof["total_ms"] > 0 and len(prof["ops"]) > 10
    assert sum(op["macs"] for op in prof["ops"]) == prof["macs"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= set(prof["by_op"])
    bound = prof["bound"]
    assert bound["achieved_gmacs_per_s"] > 0
    if bound["isa_peak_gmacs_per_s"]:
        assert 0 < bound["isa_bound_ms"] < bound["measured_ms"]


def test_count_macs_of_first_convolution(tiny_int8_tflite, tiny_model_config):
    ops = benchmark.count_macs(tiny_int8_tflite)
    convs = [op for op in ops if op["op"] == "CONV_2D"]
    # Conv1: 3x3, 3 -> 16 channels (alpha 0.35), stride 2 on 32x32: 16*16*16 outputs x 27.
    # (convs[0] is the 1x1 input normalisation: 32*32*3 outputs x 3.)
    assert convs[0]["macs"] == 32 * 32 * 3 * 3
    assert convs[1]["macs"] == 16 * 16 * 16 * 27


def test_library_rows_with_accuracy(tiny_int8_tflite, synthetic_faces):
    crops = synthetic_faces.crops(32).astype(np.float32)
    cfg = benchmark.BenchmarkConfig(
        threads=(1, 2),
        batch_sizes=(1, 4),
        warmup=1,
        runs=10,
        throughput_seconds=0.02,
        runtimes=("litert",),
        xnnpack=(True,),
    )
    report = benchmark.run_benchmark([benchmark.model_spec(tiny_int8_tflite)], cfg, (crops, synthetic_faces.poses))
    assert [r.threads for r in report.results] == [1, 2]
    for r in report.results:
        check_row(dataclasses.asdict(r))
        assert r.mae["count"] == len(crops) and r.mae["mean"] >= 0
        assert set(r.mae) >= {"yaw", "pitch", "roll", "mean"}
    assert report.results[0].mae == report.results[1].mae
    text = benchmark.format_table(report)
    assert "MAE" in text and "litert" in text


def test_tf_lite_and_keras_rows(tiny_run, tiny_tflite_models):
    cfg = benchmark.BenchmarkConfig(
        threads=(1,),
        batch_sizes=(1, 4),
        warmup=1,
        runs=10,
        throughput_seconds=0.02,
        runtimes=("tf.lite", "keras"),
        xnnpack=(True,),
    )
    specs = [benchmark.model_spec(tiny_tflite_models["int8"]), benchmark.model_spec(tiny_run)]
    report = benchmark.run_benchmark(specs, cfg)
    assert {r.runtime for r in report.results} == {"tf.lite", "keras.predict_on_batch", "keras.call"}
    for r in report.results:
        check_row(dataclasses.asdict(r))
    tf_lite = next(r for r in report.results if r.runtime == "tf.lite")
    assert "deprecated" in tf_lite.note
    keras = next(r for r in report.results if r.runtime == "keras.call")
    assert keras.variant == "keras-float" and keras.input_dtype == "float32"


def test_int8_litert_path_never_imports_tensorflow(tiny_int8_tflite, tmp_path):
    code = f"""
import sys
from qa_headpose import benchmark
cfg = benchmark.BenchmarkConfig(
    threads=(1,), batch_sizes=(1,), warmup=1, runs=5, throughput_seconds=0.0, runtimes=("litert",)
)
report = benchmark.run_benchmark([benchmark.model_spec({str(tiny_int8_tflite)!r})], cfg)
assert len(report.results) == 2, report
assert "tensorflow" not in sys.modules
job = dict(spec=benchmark.dataclasses.asdict(benchmark.model_spec({str(tiny_int8_tflite)!r})),
           runtime="litert", threads=[1], xnnpack=[True], batch_sizes=[1], warmup=1, runs=5, throughput_seconds=0.0,
           eval_batch=4, eval=None)
import json
open({str(tmp_path / "job.json")!r}, "w").write(json.dumps(job))
sys.argv = ["worker", {str(tmp_path / "job.json")!r}, {str(tmp_path / "out.json")!r}]
benchmark._worker_main()
assert "tensorflow" not in sys.modules, "the litert worker imported TensorFlow"
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "out.json").read_text())["rows"][0]["latency_p50_ms"] > 0


def test_frame_measurement(tiny_int8_tflite):
    frame = benchmark.measure_frame(tiny_int8_tflite, num_threads=1, runs=5, warmup=1)
    assert frame["frame"] == "640x480"
    for stage in ("detect", "crop_preprocess", "pose", "total"):
        assert frame[f"{stage}_p50_ms"] >= 0
    assert frame["total_p50_ms"] >= frame["pose_p50_ms"] > 0


def test_model_spec_reads_variant_and_rejects_other_files(tiny_tflite_models, tiny_run, tmp_path):
    assert benchmark.model_spec(tiny_tflite_models["dynamic"]).variant == "dynamic"
    assert benchmark.model_spec(tiny_run).format == "keras"
    specs = benchmark.find_models([tiny_tflite_models["int8"].parent])
    assert {s.variant for s in specs} >= {"int8", "float32", "dynamic"}
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError):
        benchmark.model_spec(tmp_path / "x.txt")


def test_cli_errors_exit_2(tiny_int8_tflite, tmp_path, capsys):
    assert main(["benchmark", "--model", str(tmp_path / "missing.tflite"), *FAST]) == 2
    assert main(["benchmark", "--model", str(tiny_int8_tflite), "--runtimes", "tvm", *FAST]) == 2
    (tmp_path / "b.json").write_text("{}")
    assert main(["benchmark", "--model", str(tiny_int8_tflite), *FAST, "--json", str(tmp_path / "b.json")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_root_shims_run(tiny_int8_tflite, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [
        "--model",
        str(tiny_int8_tflite),
        *FAST,
        "--runtimes",
        "litert",
        "--xnnpack",
        "on",
        "--json",
        str(tmp_path / "s.json"),
    ]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmark_tflite.py"), *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["command"].startswith("python benchmark_tflite.py --model")
    proc = subprocess.run(
        [sys.executable, str(REPO / "export_tflite.py"), "--help"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--variants" in proc.stdout
