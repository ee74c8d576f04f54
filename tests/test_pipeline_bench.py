"""The tf.data training pipeline: determinism, resume, and the throughput benchmark on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY


def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_pipeline_is_deterministic_and_resumes_mid_run(synthetic_faces):
    from qa_headpose.training.config import AugmentConfig
    from qa_headpose.training.train import make_train_dataset

    aug = AugmentConfig(rotate_deg=15.0)
    full = _batches(make_train_dataset(synthetic_faces, TINY, 8, aug, 7, 0, 3))
    again = _batches(make_train_dataset(synthetic_faces, TINY, 8, aug, 7, 0, 3))
    resumed = _batches(make_train_dataset(synthetic_faces, TINY, 8, aug, 7, 1, 3))
    other_seed = _batches(make_train_dataset(synthetic_faces, TINY, 8, aug, 8, 0, 3))
    assert len(full) == 3 * 4 and full[0][0].shape == (8, TINY, TINY, 3)
    for (x, y), (x2, y2) in zip(full, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    for (x, y), (x2, y2) in zip(full[4:], resumed, strict=True):  # epochs 1-2, as an uninterrupted run saw them
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(full[0][0], other_seed[0][0])


def test_pipeline_bench_on_a_tiny_model():
    from qa_headpose.bench.pipeline import format_summary, make_random_faces, run_pipeline_bench
    from qa_headpose.training.config import ModelConfig

    faces = make_random_faces(32, side=48)
    assert len(faces) == 32 and faces.images[0].shape == (48, 48, 3)
    cfg = ModelConfig(input_size=TINY, alpha=0.35, dropout=0.0)
    result = run_pipeline_bench(faces, cfg, batch_size=8, steps=2, pipeline_batches=4, fit=False)
    assert min(result.pipeline_img_s, result.float_step_img_s, result.qat_step_img_s) > 0
    assert result.float_fit_img_s is None
    assert result.ratio_qat == pytest.approx(result.pipeline_img_s / result.qat_step_img_s, rel=0.02)
    assert result.epoch_float_s > 0 and result.epoch_qat_s > 0
    assert "pipeline/step" in format_summary(result) and result.to_dict()["batch_size"] == 8


def test_fit_throughput_on_the_pipeline(synthetic_faces):
    from qa_headpose.bench.pipeline import _compile, measure_fit
    from qa_headpose.training.config import ModelConfig
    from qa_headpose.training.model import build_model

    model = build_model(ModelConfig(input_size=TINY, alpha=0.35, dropout=0.0))
    _compile(model)
    assert measure_fit(model, synthetic_faces.subset(range(20)), batch_size=8, steps=3) > 0  # 2 batches per epoch
