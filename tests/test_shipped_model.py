"""The two models that ship inside the package: present, fully int8, documented, and accurate on real faces."""

import json

import numpy as np
import pytest

from qa_headpose.inference import registry
from qa_headpose.inference.estimator import DEFAULT_MODEL, MODELS_DIR
from qa_headpose.inference.runtime import TFLiteRunner
from qa_headpose.training.modelcard import sha256

NAMES = registry.MODEL_NAMES
SHIPPED = "full-int8 .tflite (shipped)"


def _card(name: str) -> dict:
    return json.loads((MODELS_DIR / f"headpose_{name}.card.json").read_text())


def test_the_default_is_the_accurate_model_and_both_are_there():
    # The package ships them (setup.cfg package_data); a missing file is a broken install, not a reason to skip.
    assert DEFAULT_MODEL == registry.shipped_model_path("accurate")
    for name in NAMES:
        assert registry.shipped_model_path(name).is_file(), name


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_is_full_int8_and_small(name):
    path = registry.shipped_model_path(name)
    runner = TFLiteRunner(path)
    assert runner.is_fully_int8()
    assert runner.input_dtype == np.int8 and runner.output_dtype == np.int8
    assert path.stat().st_size <= 3_000_000
    assert runner.input_size == {"accurate": 128, "fast": 80}[name]


@pytest.mark.parametrize("name", NAMES)
def test_model_card_matches_the_files(name):
    card = _card(name)
    assert card["name"] == name
    assert card["files"][f"qa_headpose/models/headpose_{name}_int8.tflite"]["sha256"] == sha256(
        registry.shipped_model_path(name)
    )
    assert card["angle_order"] == ["yaw", "pitch", "roll"]
    shipped = card["val_mae"][SHIPPED]
    assert shipped["count"] > 200
    assert (MODELS_DIR / f"MODEL_CARD_{name}.md").read_text().count(f"{shipped['mean']:.2f}") >= 1
    meta = json.loads((MODELS_DIR / f"headpose_{name}_int8.json").read_text())
    float_config = registry.float_files(name)["train_config"]
    if float_config.is_file():  # a checkout; the wheel carries no float files
        assert meta["input_size"] == json.loads(float_config.read_text())["model"]["input_size"]


# Every committed model's training config, and the preset that must reproduce it.
COMMITTED_RECIPES = {
    "accurate": "weights/accurate/headpose_train_config.json",
    "fast": "weights/fast/headpose_train_config.json",
    "teacher-accurate": "weights/teacher_border/accurate_train_config.json",
    "teacher-fast": "weights/teacher_border/fast_train_config.json",
    "default": "weights/teacher_v1/headpose_train_config.json",
}


@pytest.mark.parametrize("preset", sorted(COMMITTED_RECIPES))
def test_each_committed_model_is_reproduced_by_its_preset(preset):
    """`qa-headpose train --preset NAME` must remake the committed model: same model, phases and extra faces."""
    from pathlib import Path

    from qa_headpose.training import presets
    from qa_headpose.training.config import ModelConfig, QATConfig, TrainConfig, from_dict, to_dict

    path = Path(__file__).resolve().parents[1] / COMMITTED_RECIPES[preset]
    if not path.is_file():
        pytest.skip("an installed wheel carries no training configs (weights/ is in the checkout only)")
    committed = json.loads(path.read_text())
    model, train, qat, data, extra = presets.train_configs(preset)
    # Through from_dict: a config saved before a field was added reads with that field's default.
    assert model == from_dict(ModelConfig, committed["model"])
    assert train == from_dict(TrainConfig, committed["train"])
    assert qat == from_dict(QATConfig, committed["qat"])
    assert data == committed["data"]["data"]
    assert (to_dict(extra) if extra else None) == (committed["data"].get("extra") or {}).get("config")
    assert train.init_weights is None or (path.parents[2] / train.init_weights).is_file(), train.init_weights


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_scores_the_val_split_as_its_card_says(name, aflw_dir):
    """Re-measures the card's int8 val MAE from the real AFLW2000 files."""
    from qa_headpose import evaluation
    from qa_headpose.datasets import load
    from qa_headpose.datasets.splits import split_train_val

    faces, _ = load.load_filtered([aflw_dir])
    _, val = split_train_val(faces)
    metrics, _ = evaluation.evaluate_model(registry.shipped_model_path(name), val)
    card = _card(name)["val_mae"][SHIPPED]
    assert metrics["count"] == card["count"]
    assert metrics["mean"] == pytest.approx(card["mean"], abs=1e-3)
    assert metrics["mean"] < 6.0  # far better than predicting the mean pose (~17 degrees)


def test_the_accurate_model_beats_the_fast_one_on_val():
    accurate, fast = (_card(n)["val_mae"][SHIPPED]["mean"] for n in ("accurate", "fast"))
    assert accurate < fast


def test_estimator_by_name_on_a_real_face(aflw_faces):
    from qa_headpose import HeadPose, HeadPoseEstimator
    from qa_headpose.core.errors import ModelError

    crops = list(aflw_faces.crops(120)[:6])
    default = HeadPoseEstimator()
    assert default.model_path == HeadPoseEstimator("accurate").model_path
    for estimator in (default, HeadPoseEstimator("fast")):
        poses = estimator.predict_batch(crops)
        assert all(isinstance(p, HeadPose) for p in poses)
        assert estimator.predict(crops[0]) == pytest.approx(poses[0], abs=1e-4)
        mae = np.mean(np.abs(np.array([p[:3] for p in poses]) - aflw_faces.poses[:6]))
        assert mae < 15
    with pytest.raises(ModelError, match="No|not found|missing"):
        HeadPoseEstimator("no-such-model.tflite")


@pytest.mark.parametrize("name", NAMES)
def test_mirroring_averages_both_passes_and_helps_on_val(name, aflw_dir):
    """``mirror``: one call on crops + mirrors equals the mean of two separate calls, and lowers the val MAE."""
    from qa_headpose import evaluation
    from qa_headpose.core.angles import flip_pose
    from qa_headpose.datasets import load
    from qa_headpose.datasets.splits import split_train_val

    faces, _ = load.load_filtered([aflw_dir])
    _, val = split_train_val(faces)
    runner = TFLiteRunner(registry.shipped_model_path(name))
    x = val.crops(runner.input_size)[:16].astype(np.float32)
    direct, of_mirror = runner(x), runner(np.ascontiguousarray(x[:, :, ::-1]))
    pose, saturated = runner.run(x, mirror=True)
    np.testing.assert_allclose(pose, (direct + flip_pose(of_mirror)) / 2, atol=1e-4)
    assert saturated.shape == (16, 3) and not saturated.any()
    assert np.abs(direct - flip_pose(of_mirror)).mean() > 0.5  # the two passes do differ
    plain = _card(name)["val_mae"][SHIPPED]["mean"]
    metrics, _ = evaluation.evaluate_model(registry.shipped_model_path(name), val, mirror=True)
    assert metrics["count"] == len(val) and metrics["mean"] < plain - 0.03
