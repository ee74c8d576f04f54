"""ONNX export (float via tf2onnx, int8 QDQ via onnxruntime) of the tiny run, evaluated like TFLite."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tf2onnx", reason="ONNX export needs tf2onnx: pip install -e .[onnx]")
pytest.importorskip("onnxruntime", reason="ONNX inference needs onnxruntime: pip install -e .[onnx]")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_run, synthetic_faces):
    from qa_headpose.training.onnx_export import export_onnx_run

    out = tmp_path_factory.mktemp("tiny_onnx")
    calibration = synthetic_faces.crops(32).astype(np.float32)[:16]
    meta = export_onnx_run(tiny_run, out, calibration)
    return out, meta


@pytest.fixture(scope="module")
def keras_reference(tiny_run, synthetic_faces):
    from qa_headpose.training import workflow
    from qa_headpose.training.train import predict_keras

    x = synthetic_faces.crops(32).astype(np.float32)
    ref = predict_keras(workflow.load_keras_from_run(tiny_run, "float"), x)
    assert (ref.std(axis=0) > 1.0).all(), ref.std(axis=0)  # distinct poses: a comparison with them can fail
    return x, ref


def test_files_and_metadata(tiny_onnx):
    out, meta = tiny_onnx
    for variant in ("float", "int8"):
        path = out / f"headpose_onnx_{variant}.onnx"
        assert path.stat().st_size == meta[variant]["file_size_bytes"] > 0
        written = json.loads(path.with_suffix(".json").read_text())
        assert written["variant"] == f"onnx-{variant}"
        assert written["output_order"] == ["yaw", "pitch", "roll"] and written["input_size"] == 32


def test_float_onnx_matches_keras(tiny_onnx, keras_reference):
    from qa_headpose.training.onnx_export import OnnxRunner

    x, ref = keras_reference
    pred = OnnxRunner(tiny_onnx[0] / "headpose_onnx_float.onnx")(x)
    assert pred.shape == (len(x), 3) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, ref, atol=1e-3 + 1e-4 * np.abs(ref).max())


@pytest.mark.xfail(
    strict=True,
    reason="open: the static-QDQ int8 ONNX of the tiny model does not follow its float model (per-angle correlation "
    "0.06-0.37 with 16 or 32 calibration crops, measured 2026-12-03); this test could not fail while the test model "
    "answered one constant pose. It will pass (and then fail as strict xfail) once the int8 export is fixed.",
)
def test_int8_onnx_is_quantized_and_close(tiny_onnx, keras_reference):
    import onnx

    from qa_headpose.training.onnx_export import OnnxRunner

    path = tiny_onnx[0] / "headpose_onnx_int8.onnx"
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x, ref = keras_reference
    pred = OnnxRunner(path, num_threads=2)(x)
    # Post-training int8 of a barely trained model: close in mean, not to 1e-6, and following it face by face.
    spread = np.abs(ref - ref.mean(0)).mean() + 1e-3
    assert np.abs(pred - ref).mean() < 0.5 * spread + 0.5
    assert all(np.corrcoef(pred[:, i], ref[:, i])[0, 1] > 0.8 for i in range(3))


def test_runner_rejects_bad_input_and_files(tiny_onnx, tmp_path):
    from qa_headpose.core.errors import ModelError
    from qa_headpose.training.onnx_export import OnnxRunner

    runner = OnnxRunner(tiny_onnx[0] / "headpose_onnx_float.onnx")
    with pytest.raises(ValueError):
        runner(np.zeros((1, 16, 16, 3), np.float32))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        OnnxRunner(tmp_path / "bad.onnx")


def test_benchmark_onnx_rows_with_accuracy(tiny_onnx, synthetic_faces):
    from qa_headpose import bench as benchmark

    crops = synthetic_faces.crops(32).astype(np.float32)
    cfg = benchmark.BenchmarkConfig(
        threads=(1,), batch_sizes=(1, 4), warmup=1, runs=10, throughput_seconds=0.02, runtimes=("onnxruntime",)
    )
    specs = benchmark.find_models([tiny_onnx[0]])
    report = benchmark.run_benchmark(specs, cfg, (crops, synthetic_faces.poses))
    assert {r.variant for r in report.results} == {"onnx-float", "onnx-int8"}
    for r in report.results:
        assert r.runtime == "onnxruntime" and r.xnnpack is None
        assert 0 < r.latency_p50_ms <= r.latency_p99_ms and r.throughput_fps["4"] > 0
        assert r.mae["count"] == len(crops)


def test_cli_export_onnx_float(tiny_run, tmp_path):
    from qa_headpose.cli import main

    assert main(["export-onnx", str(tiny_run), "--out", str(tmp_path), "--variants", "float"]) == 0
    assert (tmp_path / "headpose_onnx_float.onnx").stat().st_size > 0
    assert (
        main(["export-onnx", str(tiny_run), "--out", str(tmp_path), "--variants", "float"]) == 2
    )  # exists, no --force
    assert main(["export-onnx", str(tiny_run), "--out", str(tmp_path), "--variants", "fp16"]) == 2
