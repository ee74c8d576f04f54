"""Shipping a run as a named model: int8 + card into the package folder, float files beside the repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qa_headpose.inference import registry
from qa_headpose.inference.runtime import TFLiteRunner
from qa_headpose.training import modelcard


def test_ship_splits_int8_from_float_files_and_records_them(tmp_path, tiny_run, tiny_tflite_models):
    repo = tmp_path / "repo"
    models, weights = repo / "qa_headpose" / "models", repo / "weights"
    card = modelcard.ship(
        tiny_run,
        tiny_tflite_models["int8"].parent,
        "fast",
        models,
        weights,
        {
            "summary": "s",
            "data_statement": "d",
            "command": "c",
            "recipe": "r",
            "val_mae": {"full-int8 .tflite (shipped)": {"yaw": 1, "pitch": 2, "roll": 3, "mean": 2, "count": 8}},
            "int8_minus_float_deg": 0.01,
            "latency_int8_batch1": {1: {"p50_ms": 0.5, "p90_ms": 0.6}},
            "latency_end_to_end": {"predict, 420-px crop": {1: {"p50_ms": 0.7, "p90_ms": 0.8}}},
            "machine": "m",
            "limitations": "l",
        },
    )
    # The package folder holds only what inference needs; the float files go to weights/NAME/.
    assert sorted(p.name for p in models.iterdir()) == [
        "MODEL_CARD_fast.md",
        "headpose_fast.card.json",
        "headpose_fast_int8.json",
        "headpose_fast_int8.tflite",
    ]
    assert sorted(p.name for p in (weights / "fast").iterdir()) == [
        "headpose_float.weights.h5",
        "headpose_float32.json",
        "headpose_float32.tflite",
        "headpose_train_config.json",
    ]
    shipped = models / "headpose_fast_int8.tflite"
    assert shipped.read_bytes() == tiny_tflite_models["int8"].read_bytes()
    assert card["files"]["qa_headpose/models/headpose_fast_int8.tflite"]["sha256"] == modelcard.sha256(shipped)
    assert json.loads((models / "headpose_fast.card.json").read_text())["name"] == "fast"
    text = (models / "MODEL_CARD_fast.md").read_text()
    assert "`fast`" in text and "| predict, 420-px crop | 1 | 0.700 | 0.800 |" in text
    runner = TFLiteRunner(shipped)
    assert runner.is_fully_int8()
    x = np.full((1, runner.input_size, runner.input_size, 3), 100, np.float32)
    assert np.array_equal(runner(x), TFLiteRunner(tiny_tflite_models["int8"])(x))


def test_names_and_paths_resolve_to_model_files(tmp_path):
    assert registry.resolve_model(None) == registry.shipped_model_path("accurate")
    assert registry.resolve_model("fast").name == "headpose_fast_int8.tflite"
    assert registry.resolve_model(str(tmp_path / "m.tflite")) == tmp_path / "m.tflite"
    try:
        registry.shipped_model_path("huge")
    except ValueError as exc:
        assert "accurate, fast" in str(exc)
    else:
        raise AssertionError("an unknown name must be refused")


def test_the_card_traces_the_start_weights_back_to_the_first_model():
    """tools/ship_model.py: every committed start-weights file names what it learned from, down to teacher_v1."""
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("ship_model", repo / "tools" / "ship_model.py")
    ship_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_model)
    chain = ship_model.ancestry("weights/round5/fast_float.weights.h5")
    assert chain[0].startswith("weights/round5/fast_float.weights.h5 (5 + 2 epochs on")
    assert "aflw_extra_teacher_v5.csv" in chain[0] and "weights/teacher_border/fast_float.weights.h5" in chain[1]
    assert chain[-1].startswith("weights/teacher_v1/headpose_float.weights.h5 (60 + 10 epochs on 1154 train faces")
    assert chain[-1].endswith("from torchvision weights)")
    soup = ship_model.ancestry("weights/round7/accurate_float.weights.h5")  # an average goes on through its last parent
    assert soup[0] == (
        "weights/round7/accurate_float.weights.h5 (the weight average of 0.5 x weights/teacher_border/"
        "accurate_float.weights.h5 and 0.5 x weights/round7/accurate_whenet_float.weights.h5)"
    )
    assert soup[1].startswith("weights/round7/accurate_whenet_float.weights.h5 (3 + 1 epochs on 22347 train faces")
    assert "aflw_extra_whenet_v7.csv" in soup[1] and soup[2].startswith("weights/teacher_border/accurate_float")
    assert soup[3].startswith("weights/round3/accurate_float.weights.h5 (")
    assert ship_model.ancestry(None) == []
    assert ship_model.ancestry("weights/no_such_float.weights.h5") == [
        "weights/no_such_float.weights.h5 (not in this checkout)"
    ]
