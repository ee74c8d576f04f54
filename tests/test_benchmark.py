"""benchmark_tflite / qa-headpose benchmark on the tiny models: every field, positive and consistent numbers."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa_headpose import bench
from qa_headpose.cli import benchmark_main, export_main, main
from qa_headpose.inference import registry

REPO = Path(__file__).resolve().parents[1]
FAST = ["--threads", "1", "--batch-sizes", "1,4", "--runs", "20", "--warmup", "2", "--throughput-seconds", "0.05"]
FIELDS = {f.name for f in dataclasses.fields(bench.BenchmarkResult)}


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


@pytest.fixture
def shipped(tmp_path, monkeypatch, tiny_run, tiny_tflite_models):
    """The registry pointed at a tmp package with the tiny model shipped as "fast" (int8, float32, Keras float)."""
    models, weights = tmp_path / "models", tmp_path / "weights"
    models.mkdir()
    shutil.copy(tiny_tflite_models["int8"], models / "headpose_fast_int8.tflite")
    monkeypatch.setattr(registry, "MODELS_DIR", models)
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    files = registry.float_files("fast")
    files["float32_tflite"].parent.mkdir(parents=True)
    shutil.copy(tiny_tflite_models["float32"], files["float32_tflite"])
    shutil.copy(tiny_run / "float" / "best.weights.h5", files["float_weights"])
    shutil.copy(tiny_run / "config.json", files["train_config"])
    monkeypatch.setenv("QA_HEADPOSE_RUNS_DIR", str(tmp_path / "runs"))  # never the real runs/
    return models


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_tflite_models):
    """One CLI run on the three tiny .tflite models with ai_edge_litert, XNNPACK on and off."""
    out = tmp_path_factory.mktemp("bench")
    models = [str(tiny_tflite_models[v]) for v in ("int8", "float32", "dynamic")]
    args = ["--model", *models, *FAST, "--runtimes", "litert", "--xnnpack", "both"]
    args += ["--json", str(out / "b.json"), "--markdown", str(out / "b.md"), "--plot", str(out / "b.png")]
    args += ["--profile", "--frame", "--callers", "1,2", "--quiet"]
    code = benchmark_main(args)
    return code, out


def test_cli_writes_json_markdown_plot(cli_run):
    code, out = cli_run
    assert code == 0
    report = json.loads((out / "b.json").read_text())
    assert {"system", "config", "results", "skipped", "profile", "frame", "callers", "command"} <= set(report)
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
    assert "Per-op profile of headpose_int8.tflite@1" in markdown and "whole frame 640x480" in markdown
    assert "one HeadPoseEstimator shared by N caller threads" in markdown
    assert (out / "b.png").read_bytes()[:4] == b"\x89PNG"
    (frame,) = report["frame"]
    assert frame["threads"] == 1 and frame["faces"] == 1 and frame["total_p50_ms"] >= frame["pose_p50_ms"] > 0
    assert [r["callers"] for r in report["callers"]["rows"]] == [1, 2]


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


def test_summary_compares_the_forms_of_one_model(cli_run):
    _, out = cli_run
    data = json.loads((out / "b.json").read_text())
    rows = [bench.BenchmarkResult(**r) for r in data["results"]]
    report = bench.BenchmarkReport(data["system"], data["config"], rows)
    (item,) = bench.summarize(report)  # one folder: its int8 against its float32 (XNNPACK on rows)
    int8, f32 = (next(r for r in rows if r.variant == v and r.xnnpack) for v in ("int8", "float32"))
    assert item["int8_ms"] == int8.latency_p50_ms and item["float32_ms"] == f32.latency_p50_ms
    assert item["float32_speedup"] == pytest.approx(f32.latency_p50_ms / int8.latency_p50_ms, abs=0.01)
    assert item["keras_ms"] is None and item["best_faces_per_s"] == max(int8.throughput_fps.values())
    # A second int8 file in the same folder: one line per file, neither compared with the float32.
    report.results += [dataclasses.replace(r, model="other_int8.tflite") for r in rows if r.variant == "int8"]
    items = bench.summarize(report)
    assert [(i["family"], i["float32_ms"]) for i in items] == [
        ("headpose_int8.tflite", None),
        ("other_int8.tflite", None),
    ]
    assert len(bench.format_summary(report)) == 3


def test_count_macs_of_first_convolution(tiny_int8_tflite, tiny_model_config):
    ops = bench.count_macs(tiny_int8_tflite)
    convs = [op for op in ops if op["op"] == "CONV_2D"]
    # Conv1: 3x3, 3 -> 16 channels (alpha 0.35), stride 2 on 32x32: 16*16*16 outputs x 27.
    # (convs[0] is the 1x1 input normalisation: 32*32*3 outputs x 3.)
    assert convs[0]["macs"] == 32 * 32 * 3 * 3
    assert convs[1]["macs"] == 16 * 16 * 16 * 27


def test_library_rows_with_accuracy(tiny_tflite_models, synthetic_faces):
    from qa_headpose.core.angles import mean_absolute_errors
    from qa_headpose.inference.runtime import TFLiteRunner

    crops = synthetic_faces.crops(32).astype(np.float32)
    cfg = bench.BenchmarkConfig(
        threads=(1, 2), batch_sizes=(1, 4), warmup=1, runs=10, throughput_seconds=0.02, runtimes=("litert",)
    )
    specs = [bench.model_spec(tiny_tflite_models[v]) for v in ("int8", "float32")]
    report = bench.run_benchmark(specs, cfg, (crops, synthetic_faces.poses))
    assert [(r.variant, r.threads) for r in report.results] == [
        ("int8", 1),
        ("int8", 2),
        ("float32", 1),
        ("float32", 2),
    ]
    for r in report.results:
        check_row(dataclasses.asdict(r))
        # The MAE is that of the model's own outputs on these crops (computed here independently).
        expected = mean_absolute_errors(TFLiteRunner(r.path)(crops), synthetic_faces.poses)
        assert r.mae["count"] == len(crops)
        for key in ("yaw", "pitch", "roll", "mean"):
            assert r.mae[key] == pytest.approx(expected[key], abs=1e-3), (r.model, r.threads, key)
    text = bench.format_table(report)
    assert "MAE" in text and "litert" in text


def test_tf_lite_and_keras_rows(tiny_run, tiny_tflite_models):
    cfg = bench.BenchmarkConfig(
        threads=(1,),
        batch_sizes=(1, 4),
        warmup=1,
        runs=10,
        throughput_seconds=0.02,
        runtimes=("tf.lite", "keras", "keras.call"),
    )
    specs = [bench.model_spec(tiny_tflite_models["int8"]), bench.model_spec(tiny_run)]
    assert bench.count_rows(specs, cfg) == 3
    report = bench.run_benchmark(specs, cfg)
    assert {r.runtime for r in report.results} == {"tf.lite", "keras.predict_on_batch", "keras.call"}
    for r in report.results:
        check_row(dataclasses.asdict(r))
    tf_lite = next(r for r in report.results if r.runtime == "tf.lite")
    assert "deprecated" in tf_lite.note
    keras = next(r for r in report.results if r.runtime == "keras.call")
    assert keras.variant == "keras-float" and keras.input_dtype == "float32"


def test_int8_litert_path_never_imports_tensorflow(tiny_int8_tflite):
    code = f"""
import sys
from qa_headpose import bench
cfg = bench.BenchmarkConfig(threads=(1,), batch_sizes=(1,), warmup=1, runs=5, throughput_seconds=0.0,
                            runtimes=("litert",), xnnpack=(True, False))
report = bench.run_benchmark([bench.model_spec({str(tiny_int8_tflite)!r})], cfg)
assert len(report.results) == 2, report
assert "tensorflow" not in sys.modules, "the parent imported TensorFlow"
# The worker's own modules, run here: measuring a .tflite on LiteRT never imports TensorFlow.
from qa_headpose.bench import engines, worker
engine = engines.tflite_engine({str(tiny_int8_tflite)!r}, "litert", 1, True)
worker.measure_engine(bench.model_spec({str(tiny_int8_tflite)!r}), engine,
                      dict(warmup=1, runs=5, batch_sizes=[1], throughput_seconds=0.0), 1)
assert "tensorflow" not in sys.modules, "the litert worker imported TensorFlow"
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_litert_engine_is_the_runtime_runner(pose_model, pose_crops):
    from qa_headpose.bench import engines
    from qa_headpose.inference.preprocess import to_model_input
    from qa_headpose.inference.runtime import TFLiteRunner

    runner = TFLiteRunner(pose_model)
    x = to_model_input(pose_crops, runner.input_size)
    expected = runner(x)
    np.testing.assert_array_equal(engines.tflite_engine(str(pose_model), "litert", 1, True)(x), expected)
    # Without XNNPACK the builtin int8 kernels round differently: measured on the 226 val faces, for the round-5
    # and round-6 `fast` alike, mean 0.9-1.1 deg per angle (about one output step), max 5.5-8.6 deg.
    undelegated = engines.tflite_engine(str(pose_model), "litert", 1, False)
    assert undelegated.xnnpack is False
    difference = np.abs(undelegated(x) - expected)
    assert difference.mean() < 2.0 and difference.max() < 10.0, difference


def test_frame_goes_through_predict_image_and_needs_a_face(tiny_int8_tflite):
    frame = bench.measure_frame(tiny_int8_tflite, num_threads=1, runs=5, warmup=1)
    assert frame["frame"] == "640x480" and frame["detector"].startswith("BlazeFace")
    assert frame["faces"] == 1 and frame["face_score"] > 0.5
    x0, y0, x1, y1 = frame["face_box"]
    assert 80 <= x0 < x1 <= 560 and 0 <= y0 < y1 <= 480  # the face of the 480x480 image centred in 640
    for stage in ("detect", "crop_preprocess", "pose", "total"):
        assert frame[f"{stage}_p50_ms"] > 0
    assert frame["total_p50_ms"] >= frame["pose_p50_ms"]
    with pytest.raises(ValueError, match="No face detected"):  # never timed with a made-up box
        bench.measure_frame(tiny_int8_tflite, 1, runs=2, warmup=0, frame=np.full((480, 640, 3), 90, np.uint8))


def test_callers_share_one_estimator(pose_model):
    result = bench.measure_callers(pose_model, callers=(1, 4), seconds=0.2)
    assert [r["callers"] for r in result["rows"]] == [1, 4]
    for r in result["rows"]:
        assert r["image_faces_per_s"] > 0 and r["crop_faces_per_s"] > r["image_faces_per_s"] and r["calls"] > 0
        assert r["max_diff_deg"] == 0.0  # every concurrent call returns what a lone call returns
    with pytest.raises(ValueError, match="callers"):
        bench.measure_callers(pose_model, callers=(0,))


def test_model_spec_reads_variant_and_rejects_other_files(tiny_tflite_models, tiny_run, tmp_path):
    assert bench.model_spec(tiny_tflite_models["dynamic"]).variant == "dynamic"
    assert bench.model_spec(tiny_run).format == "keras"
    specs = bench.find_models([tiny_tflite_models["int8"].parent])
    assert {s.variant for s in specs} >= {"int8", "float32", "dynamic"}
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError):
        bench.model_spec(tmp_path / "x.txt")


def test_default_models_named_or_the_package_model(shipped, tiny_tflite_models):
    specs = bench.default_models()
    assert [(s.name, s.format, s.family) for s in specs] == [
        ("fast int8", "tflite", "fast"),
        ("fast float32", "tflite", "fast"),
        ("fast float", "keras", "fast"),
    ]
    assert [s.name for s in bench.find_models(["fast"])] == [s.name for s in specs]
    with pytest.raises(FileNotFoundError, match="'accurate' is not installed"):
        bench.find_models(["accurate"])
    # Before the named models ship: the package's headpose_int8.tflite and the float files beside it.
    (shipped / "headpose_fast_int8.tflite").rename(shipped / "headpose_int8.tflite")
    shutil.copy(tiny_tflite_models["float32"], shipped / "headpose_float32.tflite")
    assert [s.name for s in bench.default_models()] == ["shipped int8", "shipped float32"]
    (shipped / "headpose_int8.tflite").unlink()
    with pytest.raises(FileNotFoundError, match="No shipped head-pose model"):
        bench.default_models()


def test_default_run_measures_the_shipped_model_three_ways_and_summarizes(shipped, capsys):
    assert benchmark_main([*FAST[2:], "--threads", "3"]) == 0
    out, err = capsys.readouterr()
    assert "warning: --threads 3 exceeds the" in err
    table = out.split("summary:")[0]
    assert "fast int8" in table and "fast float32" in table and "keras.predict_on_batch" in table
    assert "tf.lite" not in table and "onnxruntime" not in table and "off" not in table  # behind flags
    summary = out.split("summary:")[1].strip().splitlines()
    assert len(summary) == 2 and summary[1].strip().startswith("fast (32x32, 3 thread(s)): int8 ")
    assert "float32 .tflite" in summary[1] and "Keras float" in summary[1] and "x faster" in summary[1]


def test_export_the_newest_run_then_benchmark_it(shipped, tiny_run, synthetic_faces, tmp_path, capsys):
    from qa_headpose.datasets.npz import save_fsanet_npz

    runs = tmp_path / "runs"
    runs.mkdir()
    assert export_main(["--quiet"]) == 2
    assert f"no trained run in {runs}" in capsys.readouterr().err
    old = shutil.copytree(tiny_run, runs / "old")
    os.utime(old / "qat" / "best.weights.h5", (1e9, 1e9))
    newest = shutil.copytree(tiny_run, runs / "newest")
    shutil.rmtree(shutil.copytree(tiny_run, runs / "untrained") / "qat")  # still in its float phase: not a candidate
    notebook = shutil.copytree(tiny_run, runs / "notebook")  # the notebook's run is not yours, however new
    os.utime(notebook / "qat" / "best.weights.h5", (2e9, 2e9))
    npz = tmp_path / "calibration.npz"
    save_fsanet_npz(synthetic_faces, npz, 48)

    assert export_main(["--variants", "int8", "--data", str(npz), "--progress"]) == 0
    out, err = capsys.readouterr()
    assert f"exporting the newest run {newest} " in out and f"to {newest / 'models'}" in out
    assert "converting int8" in err  # the progress bar
    assert (newest / "models" / "headpose_int8.tflite").is_file() and not (old / "models").exists()
    assert not (notebook / "models").exists()

    assert benchmark_main([*FAST, "--runtimes", "litert", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert f"also measuring your newest export {newest / 'models' / 'headpose_int8.tflite'}" in err
    assert "measuring" not in err.replace("also measuring", "") and "row" not in err  # --quiet
    assert f"{newest} int8" in out and "fast int8" in out


def test_cli_errors_exit_2(tiny_int8_tflite, tmp_path, capsys):
    assert main(["benchmark", "--model", str(tmp_path / "missing.tflite"), *FAST]) == 2
    assert main(["benchmark", "--model", str(tiny_int8_tflite), "--runtimes", "tvm", *FAST]) == 2
    (tmp_path / "b.json").write_text("{}")
    assert main(["benchmark", "--model", str(tiny_int8_tflite), *FAST, "--json", str(tmp_path / "b.json")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_root_shims_run(tiny_int8_tflite, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["--model", str(tiny_int8_tflite), *FAST, "--runtimes", "litert", "--json", str(tmp_path / "s.json")]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmark_tflite.py"), *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["command"].startswith("python benchmark_tflite.py --model")
    proc = subprocess.run(
        [sys.executable, str(REPO / "export_tflite.py"), "--help"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--variants" in proc.stdout and "newest run" in proc.stdout
