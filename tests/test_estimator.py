import numpy as np
import pytest

from qa_headpose import HeadPose, HeadPoseEstimator


def test_predict_and_batch_agree(tiny_int8_tflite, aflw_faces):
    est = HeadPoseEstimator.from_tflite(tiny_int8_tflite)
    crops = [aflw_faces.crops(100)[0], aflw_faces.crops(57)[1]]  # any size
    single = [est.predict(c) for c in crops]
    batch = est.predict_batch(crops)
    assert all(isinstance(p, HeadPose) for p in single)
    np.testing.assert_allclose(np.array(single), np.array(batch), atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 5, 3), np.uint8),
    ],
)
def test_predict_rejects_bad_arrays(tiny_int8_tflite, bad):
    with pytest.raises(ValueError):
        HeadPoseEstimator.from_tflite(tiny_int8_tflite).predict(bad)


def test_predict_batch_rejects_empty(tiny_int8_tflite):
    with pytest.raises(ValueError, match="empty"):
        HeadPoseEstimator.from_tflite(tiny_int8_tflite).predict_batch([])
