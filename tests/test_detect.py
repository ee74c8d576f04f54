"""The BlazeFace detector: anchors, decoding, weighted NMS, the box mapping, and real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from qa_headpose.core.errors import ModelError
from qa_headpose.inference import detect
from qa_headpose.inference.detect import (
    Detection,
    FaceDetector,
    box_iou,
    crop_box_from_detection,
    decode_boxes,
    fit_box_mapping,
    make_anchors,
    match_detection,
    weighted_nms,
)
from qa_headpose.inference.registry import SAMPLE_IMAGE

# The astronaut's face in the shipped sample, marked by hand (x_min, y_min, x_max, y_max).
ASTRONAUT_FACE = (180, 80, 270, 178)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(num_threads=1)


@pytest.fixture(scope="module")
def sample_image() -> np.ndarray:
    return cv2.imread(str(SAMPLE_IMAGE))


def _aflw_images(aflw_dir, n: int, max_abs_yaw: float = 99.0):
    """The first n AFLW2000 images with |yaw| below the bound, with their landmark boxes."""
    pytest.importorskip("scipy")
    from qa_headpose.datasets.mat import read_mat_label
    from qa_headpose.inference.images import read_image

    out = []
    for path in sorted(aflw_dir.glob("*.jpg")):
        pose, box = read_mat_label(path.with_suffix(".mat"))
        if np.all(np.abs(pose) <= 99) and abs(pose[0]) <= max_abs_yaw:
            out.append((read_image(path), box, pose))
        if len(out) == n:
            break
    return out


def test_anchors_match_mediapipe_layout():
    anchors = make_anchors()
    assert anchors.shape == (896, 2)
    assert np.all((anchors > 0) & (anchors < 1))
    # 16x16 grid with 2 anchors per cell, then 8x8 with 6 per cell, row-major.
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_decode_boxes_is_relative_to_the_anchor():
    anchors = np.array([[0.25, 0.5]], np.float32)
    raw = np.zeros((1, 16), np.float32)
    raw[0, :4] = [12.8, -12.8, 64, 32]  # centre +0.1, -0.1; size 0.5 x 0.25 of 128
    raw[0, 4:6] = [6.4, 0]
    out = decode_boxes(raw, anchors)
    np.testing.assert_allclose(out[0, :4], [0.1, 0.275, 0.6, 0.525], atol=1e-6)
    np.testing.assert_allclose(out[0, 4:6], [0.3, 0.5], atol=1e-6)


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    merged = weighted_nms(boxes, np.array([0.9, 0.3, 0.6]), 0.3)
    assert [s for _, s in merged] == [0.9, 0.6]
    np.testing.assert_allclose(merged[0][0], [0.25, 0, 10.25, 10])  # (0.9 * 0 + 0.3 * 1) / 1.2
    np.testing.assert_allclose(merged[1][0], boxes[2])


def test_box_iou():
    np.testing.assert_allclose(box_iou(np.array([0, 0, 2, 2]), np.array([[1, 0, 3, 2], [5, 5, 6, 6]])), [1 / 3, 0])


def test_fit_box_mapping_recovers_a_known_mapping():
    rng = np.random.default_rng(0)
    det = rng.uniform(0, 100, (50, 2))
    det = np.concatenate([det, det + rng.uniform(20, 80, (50, 2))], axis=1)
    w, h = det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]
    cx, cy = (det[:, 0] + det[:, 2]) / 2 + 0.1 * w, (det[:, 1] + det[:, 3]) / 2 - 0.05 * h
    lm = np.stack([cx - 0.6 * w, cy - 0.45 * h, cx + 0.6 * w, cy + 0.45 * h], axis=1)
    np.testing.assert_allclose(fit_box_mapping(det, lm), (0.1, -0.05, 1.2, 0.9), atol=1e-9)
    with pytest.raises(ValueError):
        fit_box_mapping(det[:0], lm[:0])


def test_crop_box_from_detection_applies_the_constants():
    box = crop_box_from_detection((100, 100, 200, 300))
    w, h = box[2] - box[0], box[3] - box[1]
    shift_x, shift_y, scale_x, scale_y = detect.BOX_MAPPINGS["short"]
    assert w == pytest.approx(100 * scale_x, abs=1e-3)
    assert h == pytest.approx(200 * scale_y, abs=1e-3)
    assert (box[1] + box[3]) / 2 == pytest.approx(200 + shift_y * 200, abs=1e-3)
    assert (box[0] + box[2]) / 2 == pytest.approx(150 + shift_x * 100, abs=1e-3)
    np.testing.assert_allclose(crop_box_from_detection((0, 0, 10, 10), (0.1, 0, 2, 1)), [-4, 0, 16, 10])


def test_match_detection_uses_the_box_centre():
    dets = [Detection((0, 0, 10, 10), 0.9, np.zeros((6, 2))), Detection((20, 20, 60, 60), 0.8, np.zeros((6, 2)))]
    assert match_detection(dets, np.array([30, 30, 50, 50])) == 1
    assert match_detection(dets, np.array([100, 100, 120, 120])) is None


def test_finds_the_astronaut(detector, sample_image):
    dets = detector.detect(sample_image)
    assert len(dets) == 1
    assert dets[0].score > 0.8
    assert box_iou(np.array(dets[0].box), np.array([ASTRONAUT_FACE]))[0] > 0.7
    assert dets[0].keypoints.shape == (6, 2)
    right_eye, left_eye = dets[0].keypoints[:2]
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image left


def test_mirrored_image_gives_a_mirrored_box(detector, sample_image):
    (a,) = detector.detect(sample_image)
    (b,) = detector.detect(np.ascontiguousarray(sample_image[:, ::-1]))
    w = sample_image.shape[1]
    np.testing.assert_allclose([w - b.box[2], b.box[1], w - b.box[0], b.box[3]], a.box, atol=3)


def test_boxes_are_in_pixels_of_non_square_images(detector, sample_image):
    (a,) = detector.detect(sample_image)
    # Same longer side, so the face has the same size in the letterboxed input; the boxes
    # still move by a few pixels with the resampling grid.
    (b,) = detector.detect(np.ascontiguousarray(sample_image[:, 100:400]))
    np.testing.assert_allclose(np.array(b.box) + [100, 0, 100, 0], a.box, atol=8)
    (c,) = detector.detect(np.ascontiguousarray(sample_image[30:330]))  # 300 high, 512 wide
    np.testing.assert_allclose(np.array(c.box) + [0, 30, 0, 30], a.box, atol=8)


def test_no_face_in_a_blank_or_noise_image(detector):
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)) == []


def test_finds_real_aflw2000_faces(detector, aflw_dir):
    faces = _aflw_images(aflw_dir, 30)
    found = [match_detection(detector.detect(image), box) is not None for image, box, _ in faces]
    assert np.mean(found) >= 0.9


def test_several_faces_and_max_faces(detector, aflw_dir):
    (a, _, _), (b, _, _) = _aflw_images(aflw_dir, 2, max_abs_yaw=30)
    both = np.hstack([a, cv2.resize(b, (a.shape[1], a.shape[0]))])
    dets = detector.detect(both)
    assert len(dets) == 2
    assert {d.box[0] < a.shape[1] for d in dets} == {True, False}
    assert dets[0].score >= dets[1].score
    assert len(detector.detect(both, max_faces=1)) == 1


def test_detector_input_errors(detector, tiny_int8_tflite, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="min_score"):
        FaceDetector(min_score=1.5)
    with pytest.raises(ModelError, match="not found"):
        FaceDetector(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="BlazeFace"):
        FaceDetector(tiny_int8_tflite)


def test_full_range_model_finds_small_faces(detector, sample_image):
    full = FaceDetector("full", num_threads=1)
    assert full.name == "full" and len(full.anchors) == 2304
    assert box_iou(np.array(full.detect(sample_image)[0].box), np.array([ASTRONAUT_FACE]))[0] > 0.6
    # The astronaut's face about 90 px wide in a 1280x720 frame: too small for the short-range model.
    frame = np.full((720, 1280, 3), 120, np.uint8)
    frame[200:712, 400:912] = sample_image
    assert detector.detect(frame) == []
    (det,) = full.detect(frame)
    assert box_iou(np.array(det.box), np.array([ASTRONAUT_FACE]) + [400, 200, 400, 200])[0] > 0.6
    assert not np.allclose(full.crop_box(det.box), detector.crop_box(det.box))
