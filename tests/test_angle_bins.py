"""The binned head (issue 27 d): softmax over angle bins, expectation in degrees, cross-entropy beside the L1."""

import dataclasses

import numpy as np
import pytest

BINS = 12


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def binned_config(tiny_model_config):
    return dataclasses.replace(tiny_model_config, angle_bins=BINS)


def test_bin_centres_cover_the_angle_limit_evenly():
    from qa_headpose.training.model import angle_bin_centers

    centres = angle_bin_centers(66)  # HopeNet's 3-degree bins
    assert centres[0] == pytest.approx(-97.5) and centres[-1] == pytest.approx(97.5)
    np.testing.assert_allclose(np.diff(centres), 3.0, atol=1e-5)


def test_binned_head_outputs_the_expectation_of_each_angles_bins(binned_config, tiny_images):
    from qa_headpose.training.model import BIN_LOGITS_NAME, OUTPUT_NAME, angle_bin_centers, build_model, with_bin_logits

    model = build_model(binned_config)
    logits_layer = model.get_layer(BIN_LOGITS_NAME)
    rng = np.random.default_rng(0)
    kernel, bias = logits_layer.get_weights()
    logits_layer.set_weights([rng.normal(0, 1, kernel.shape), rng.normal(0, 3, bias.shape)])
    x = tiny_images.astype(np.float32)
    # Batch statistics (training=True, no dropout): the untrained BatchNorms would give every input one answer.
    both = with_bin_logits(model)(x, training=True).numpy()
    pose = model(x, training=True).numpy()
    assert both.shape == (len(x), 3 + 3 * BINS) and pose.shape == (len(x), 3)
    np.testing.assert_allclose(both[:, :3], pose, atol=1e-5)
    expected = (_softmax(both[:, 3:].reshape(-1, 3, BINS)) * angle_bin_centers(BINS)).sum(-1)
    np.testing.assert_allclose(pose, expected, atol=1e-3)
    assert np.ptp(pose, axis=0).min() > 1.0  # distinct answers, so the comparison above compares something
    assert not model.get_layer(OUTPUT_NAME).trainable


def test_a_regression_model_has_no_training_view(tiny_model_config):
    from qa_headpose.training.model import build_model, with_bin_logits

    model = build_model(tiny_model_config)
    assert with_bin_logits(model) is model


def test_loss_is_l1_plus_the_cross_entropy_of_the_labels_bin():
    from qa_headpose.training.model import angle_bin_centers
    from qa_headpose.training.train import binned_pose_loss

    loss = binned_pose_loss(BINS, ce_weight=0.5)
    labels = np.array([[-99.0, 0.1, 40.0], [99.0, -20.0, 5.0]], np.float32)
    pose = np.array([[-90.0, 2.1, 40.0], [96.0, -20.0, 8.0]], np.float32)
    bins = np.clip(np.floor((labels + 99.0) / (198.0 / BINS)), 0, BINS - 1).astype(int)
    assert bins.tolist() == [[0, 6, 8], [11, 4, 6]]
    logits = np.random.default_rng(1).normal(0, 2, (2, 3, BINS)).astype(np.float32)
    ce = -np.log(np.take_along_axis(_softmax(logits), bins[..., None], -1)[..., 0])
    expected = np.abs(labels - pose).mean(1) + 0.5 * ce.mean(1)
    got = loss(labels, np.concatenate([pose, logits.reshape(2, -1)], 1)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The label's own bin scored high costs less than a neighbour's.
    right, wrong = np.zeros((1, 3, BINS), np.float32), np.zeros((1, 3, BINS), np.float32)
    right[0, :, 8], wrong[0, :, 9] = 5.0, 5.0
    at = np.full((1, 3), angle_bin_centers(BINS)[8], np.float32)
    score = [loss(at, np.concatenate([at, z.reshape(1, -1)], 1)).numpy()[0] for z in (right, wrong)]
    assert score[0] < score[1] - 2.0


def test_binned_run_starts_from_a_regression_models_backbone_and_exports_full_int8(
    tiny_run, binned_config, synthetic_faces, tmp_path
):
    """Backbone from the regression run, a fresh head; weights chosen on val MAE (not the loss); int8 = QAT Keras."""
    from qa_headpose import evaluation
    from qa_headpose.inference.runtime import TFLiteRunner
    from qa_headpose.training import workflow
    from qa_headpose.training.config import AugmentConfig, ExportConfig, QATConfig, TrainConfig
    from qa_headpose.training.model import OUTPUT_NAME, angle_bin_centers

    init = tiny_run / "float" / "best.weights.h5"
    start = workflow._float_model(binned_config, init)
    regression = workflow.load_keras_from_run(tiny_run, "float")
    np.testing.assert_array_equal(
        start.get_layer("Conv1").get_weights()[0], regression.get_layer("Conv1").get_weights()[0]
    )
    np.testing.assert_array_equal(start.get_layer(OUTPUT_NAME).get_weights()[0][:BINS, 0], angle_bin_centers(BINS))

    prepared = workflow.PreparedData(
        synthetic_faces.subset(range(24)), synthetic_faces.subset(range(24, 32)), {"data": []}
    )
    aug = AugmentConfig.none()
    run = tmp_path / "binned"
    summary = workflow.train_run(
        run,
        prepared,
        binned_config,
        TrainConfig(epochs=2, batch_size=8, learning_rate=3e-3, augment=aug, init_weights=str(init)),
        QATConfig(epochs=1, batch_size=8, learning_rate=1e-4, augment=aug),
        verbose=0,
    )
    # The best float epoch is scored by its mean val MAE; the loss adds about ln(12) = 2.5 of cross-entropy.
    assert summary["float"]["best_val_mae"] == pytest.approx(summary["float"]["val"]["mean"], abs=0.02)

    written = workflow.export_run(run, tmp_path / "export", prepared.train, ExportConfig(num_calibration=16), ("int8",))
    tflite = tmp_path / "export" / "headpose_int8.tflite"
    assert written["int8"]["fully_int8"] and TFLiteRunner(tflite).output_quantization == (100 / 128, 0)
    x = synthetic_faces.crops(32).astype(np.float32)
    int8 = evaluation.predict_model(tflite, x)
    keras_qat = workflow.load_keras_from_run(run, "qat").predict_on_batch(x)
    assert (int8.std(axis=0) > 1.0).all(), int8.std(axis=0)
    # The backbone's int8 rounding moves the bin scores (by 0.7 on this tiny model), which a softmax over 12
    # bins of 16.5 degrees turns into a few degrees: the two agree in trend, not to the step.
    assert all(np.corrcoef(int8[:, i], keras_qat[:, i])[0, 1] > 0.4 for i in range(3))
    # The int8 model's answer is the expectation over its own int8 bin probabilities, to one output step.
    probs = _int8_bin_probabilities(tflite, x)
    expected = (probs.reshape(-1, 3, BINS) * angle_bin_centers(BINS)).sum(-1)
    assert np.abs(expected - int8).max() <= 100 / 128, np.abs(expected - int8).max()


def _int8_bin_probabilities(tflite, x: np.ndarray) -> np.ndarray:
    """The int8 softmax's output per crop, dequantized (LiteRT keeps every tensor on request)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    image = interpreter.get_input_details()[0]
    scale, zero = image["quantization"]
    (softmax,) = [d for d in interpreter.get_tensor_details() if d["name"].endswith("pose_bin_softmax/Softmax")]
    out = []
    for crop in x:
        interpreter.set_tensor(image["index"], np.clip(np.round(crop / scale + zero), -128, 127).astype(np.int8)[None])
        interpreter.invoke()
        p_scale, p_zero = softmax["quantization"]
        out.append((interpreter.get_tensor(softmax["index"]).astype(np.float32) - p_zero) * p_scale)
    return np.concatenate(out)


def test_train_option_sets_the_bins_on_any_preset_and_refuses_one_bin(tmp_path):
    import subprocess
    import sys

    from qa_headpose.training.presets import train_configs

    model, *_ = train_configs("fast", angle_bins=66)
    assert model.angle_bins == 66 and model.input_size == 80
    assert train_configs("fast")[0].angle_bins == 0
    out = subprocess.run(
        [sys.executable, "-m", "qa_headpose.cli", "train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
        + ["--angle-bins", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .endswith("angle_bins must be 0 (regression) or >= 2. Received: angle_bins=1")
    )


def test_qat_rounds_the_bin_probabilities_to_the_int8_softmax_grid(binned_config, tiny_images):
    """QAT sees the 1/256 steps of the int8 softmax (tfmot alone would leave the probabilities in float)."""
    from qa_headpose.training._keras import keras
    from qa_headpose.training.model import BIN_SOFTMAX_NAME, build_model
    from qa_headpose.training.qat import make_qat_model

    qat = make_qat_model(build_model(binned_config))
    probs = keras.Model(qat.input, qat.get_layer(f"quant_{BIN_SOFTMAX_NAME}").output)
    p = probs(tiny_images.astype(np.float32), training=True).numpy()
    assert len(np.unique(p)) > 3  # not one constant answer
    np.testing.assert_allclose(p * 256, np.round(p * 256), atol=1e-3)
    assert p.max() <= 255 / 256 + 1e-6
