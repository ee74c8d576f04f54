"""The model that ships inside the package: present, fully int8, documented, and accurate on real faces."""

import json

import numpy as np
import pytest

from qa_headpose.estimator import DEFAULT_MODEL, MODELS_DIR


def test_shipped_model_is_there():
    # The package ships it (setup.cfg package_data); a missing file is a broken install, not a reason to skip.
    assert DEFAULT_MODEL.is_file(), DEFAULT_MODEL


def test_shipped_model_is_full_int8_and_small():
    from qa_headpose.runtime import TFLiteRunner

    runner = TFLiteRunner(DEFAULT_MODEL)
    assert runner.is_fully_int8()
    assert runner.input_dtype == np.int8 and runner.output_dtype == np.int8
    assert DEFAULT_MODEL.stat().st_size <= 3_000_000


def test_model_card_matches_the_files():
    from qa_headpose.modelcard import sha256

    card = json.loads((MODELS_DIR / "headpose_int8.card.json").read_text())
    assert card["files"]["headpose_int8.tflite"]["sha256"] == sha256(DEFAULT_MODEL)
    assert card["angle_order"] == ["yaw", "pitch", "roll"]
    shipped = card["val_mae"]["full-int8 .tflite (shipped)"]
    assert shipped["count"] > 200
    assert (MODELS_DIR / "MODEL_CARD.md").read_text().count(f"{shipped['mean']:.2f}") >= 1
    meta = json.loads((MODELS_DIR / "headpose_int8.json").read_text())
    assert (
        meta["input_size"] == json.loads((MODELS_DIR / "headpose_train_config.json").read_text())["model"]["input_size"]
    )


def test_shipped_model_scores_the_val_split_as_its_card_says(aflw_dir):
    """Re-measures the card's int8 val MAE from the real AFLW2000 files."""
    from qa_headpose import workflow
    from qa_headpose.data import split_train_val

    faces, _ = workflow.load_filtered([aflw_dir])
    _, val = split_train_val(faces)
    metrics, _ = workflow.evaluate_model(DEFAULT_MODEL, val)
    card = json.loads((MODELS_DIR / "headpose_int8.card.json").read_text())["val_mae"]["full-int8 .tflite (shipped)"]
    assert metrics["count"] == card["count"]
    assert metrics["mean"] == pytest.approx(card["mean"], abs=1e-3)
    assert metrics["mean"] < 6.0  # far better than predicting the mean pose (~17 degrees)


def test_estimator_default_api_on_a_real_face(aflw_faces):
    from qa_headpose import HeadPose, HeadPoseEstimator

    estimator = HeadPoseEstimator()
    crops = list(aflw_faces.crops(120)[:6])
    poses = estimator.predict_batch(crops)
    assert all(isinstance(p, HeadPose) for p in poses)
    assert estimator.predict(crops[0]) == pytest.approx(poses[0], abs=1e-4)
    mae = np.mean(np.abs(np.array(poses) - aflw_faces.poses[:6]))
    assert mae < 15
