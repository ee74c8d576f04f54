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


# ---------------------------------------------------------------- found by mutation testing (docs/testing.md)
def test_landmark_box_edges():
    # A point at 0 is visible; a NaN column is dropped whole; two visible points are enough.
    pts = np.array([[0.0, 8.0, np.nan, 3.0], [5.0, 9.0, 1.0, np.nan]])
    box = preprocess.landmark_box(pts)
    assert box.dtype == np.float32 and box.tolist() == [0.0, 5.0, 8.0, 9.0]
    with pytest.raises(ValueError, match=r"pt2d must have shape \(2, n\). Received: shape=\(4,\)"):
        preprocess.landmark_box(np.zeros(4))
    with pytest.raises(ValueError, match="must have shape"):
        preprocess.landmark_box(np.zeros(2))  # 1-D, even with two values
    # Wider than tall, far right of the image: a valid box (y_max < x_max must not matter).
    assert preprocess.landmark_box(np.array([[100.0, 300.0], [1.0, 5.0]])).tolist() == [100.0, 1.0, 300.0, 5.0]
    with pytest.raises(ValueError, match="fewer than 2 visible landmarks. Received: 1"):
        preprocess.landmark_box(np.array([[1.0, -1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"Landmark box is empty. Received: box=\[1.0, 4.0, 9.0, 4.0\]"):
        preprocess.landmark_box(np.array([[1.0, 9.0], [4.0, 4.0]]))  # zero height
    with pytest.raises(ValueError, match="Landmark box is empty"):
        preprocess.landmark_box(np.array([[1.0, 9.0], [20.0, 20.0]]))  # zero height, below the x range


def test_enlarge_box_keeps_float32_of_any_input():
    box = preprocess.enlarge_box(np.array([10, 20, 30, 60], np.int64), 0.25)
    assert box.dtype == np.float32 and box.tolist() == [5.0, 10.0, 35.0, 70.0]


def test_clipped_pixel_box_clips_at_zero_and_needs_two_pixels():
    # Margin 0.5 (not the default 0.6): 10..30 grows to 0..40, 5..25 to -5..35 -> clipped to 0.
    assert preprocess.clipped_pixel_box(np.array([10, 5, 30, 25]), 0.5, (100, 100, 3)) == (0, 0, 40, 35)
    assert preprocess.clipped_pixel_box(np.array([1.2, 1.2, 3.4, 3.4]), 0.0, (100, 100, 3)) == (1, 1, 4, 4)
    # Exactly 2 px inside the image on each side is enough; 1 px on either side is not.
    assert preprocess.clipped_pixel_box(np.array([98, 98, 110, 110]), 0.0, (100, 100, 3)) == (98, 98, 100, 100)
    for box in ([99, 50, 120, 60], [50, 99, 60, 120]):
        with pytest.raises(ValueError, match="outside the 100x100 image"):
            preprocess.clipped_pixel_box(np.array(box), 0.0, (100, 100, 3))


def _gradient(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 7 + yy * 3) % 256, (xx * xx + yy) % 256, (yy * 11) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize(
    "shape, steps",
    [
        ((300, 280, 3), [(64, 64, "linear"), (32, 32, "area")]),  # more than 2x smaller: bilinear to 2x, then area
        ((60, 50, 3), [(32, 32, "area")]),  # a smaller shrink: area averaging
        ((20, 24, 3), [(32, 32, "linear")]),  # growing: bilinear
        ((64, 20, 3), [(32, 32, "linear")]),  # taller, narrower: grows one way, so bilinear
        ((20, 64, 3), [(32, 32, "linear")]),
        ((32, 40, 3), [(32, 32, "linear")]),  # one side already the size: not a shrink of both
        ((65, 300, 3), [(64, 64, "linear"), (32, 32, "area")]),
        ((64, 300, 3), [(32, 32, "area")]),  # exactly 2x on one side: one area step
        ((300, 64, 3), [(32, 32, "area")]),
        ((300, 80, 3), [(64, 64, "linear"), (32, 32, "area")]),  # 2.5x: two steps
        ((40, 32, 3), [(32, 32, "linear")]),  # width already the size: not a shrink of both
    ],
)
def test_resize_square_is_the_documented_cv2_pipeline(shape, steps):
    import cv2

    image = _gradient(*shape[:2])
    expected = image
    for w, h, kind in steps:
        interpolation = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}[kind]
        expected = cv2.resize(expected, (w, h), interpolation=interpolation)
    np.testing.assert_array_equal(preprocess.resize_square(image, 32), expected)
    square = _gradient(32, 32)
    assert preprocess.resize_square(square, 32) is square  # already the size: untouched


def test_to_model_input_messages_name_the_fix():
    with pytest.raises(ValueError, match=r"^Received an empty batch of crops\.$"):
        preprocess.to_model_input([], 32)
    with pytest.raises(ValueError) as info:
        preprocess.to_model_input([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float64)], 32)
    assert str(info.value) == (
        "Crop 1 is float64; pass uint8 BGR pixels 0-255 "
        "(for a float image in [0, 1]: (crop * 255).round().astype(np.uint8))"
    )
    with pytest.raises(ValueError) as info:
        preprocess.to_model_input([np.zeros((4, 4, 4), np.uint8)], 32)
    assert str(info.value) == (
        "Each crop must be a uint8 BGR array (H, W, 3) of pixels 0-255. "
        "Received for crop 0: dtype=uint8, shape=(4, 4, 4)"
    )
    one_pixel = preprocess.to_model_input([np.full((1, 1, 3), 7, np.uint8)], 4)  # 1x1 is a crop too
    assert one_pixel.shape == (1, 4, 4, 3) and (one_pixel == 7).all()
