import numpy as np
import pytest

from qa_headpose.inference import preprocess


def test_landmark_box_skips_invisible_points():
    pts = np.array([[10.0, 50.0, -1.0, 30.0], [20.0, 60.0, 500.0, 40.0]])
    np.testing.assert_allclose(preprocess.landmark_box(pts), [10, 20, 50, 60])


@pytest.mark.parametrize(
    "pts", [np.zeros((3, 4)), np.array([[1.0, -1.0], [1.0, 2.0]]), np.array([[5.0, 5.0], [1.0, 9.0]])]
)
def test_landmark_box_rejects_bad_points(pts):
    with pytest.raises(ValueError):
        preprocess.landmark_box(pts)


def test_enlarge_box_by_margin():
    np.testing.assert_allclose(preprocess.enlarge_box([10, 20, 30, 60], 0.6), [-2, -4, 42, 84])


def test_crop_face_is_fsanet_crop_clipped_to_image():
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = 255  # the face box
    crop = preprocess.crop_face(image, np.array([40, 40, 60, 60]), 44)
    assert crop.shape == (44, 44, 3) and crop.dtype == np.uint8
    # enlarged box is 28..72 -> the white square spans 12/44 .. 32/44 of the crop
    assert crop[22, 22, 0] == 255 and crop[2, 2, 0] == 0
    clipped = preprocess.crop_face(image, np.array([0, 0, 20, 20]), 32)  # box grows past the corner
    assert clipped.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="outside"):
        preprocess.crop_face(image, np.array([300, 300, 320, 320]), 32)


def test_to_model_input_dtype_shape_range():
    crops = [np.full((50, 40, 3), 255, np.uint8), np.zeros((10, 10, 3), np.uint8)]
    x = preprocess.to_model_input(crops, 32)
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32
    assert x[0].min() == 255 and x[1].max() == 0


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [np.zeros((10, 10), np.uint8)],
        [np.zeros((10, 10, 3), np.float32)],
        [np.zeros((10, 10, 4), np.uint8)],
        [np.zeros((0, 10, 3), np.uint8)],
    ],
)
def test_to_model_input_rejects(bad):
    with pytest.raises(ValueError):
        preprocess.to_model_input(bad, 32)
