"""EXIF orientation: a photo tagged "rotate 90 clockwise" (Orientation=6) reads upright in `read_image` and
`decode_image`, so the command line, the API (tests/test_hostile.py) and the live page (the browser applies the
tag before it encodes a frame) see the same pixels and give the same pose.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from qa_headpose import HeadPoseEstimator
from qa_headpose.inference.images import decode_image, read_image
from qa_headpose.inference.registry import SAMPLE_IMAGE

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("serve_attacks", REPO / "tools" / "serve_attacks.py")
attacks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attacks)


@pytest.fixture(scope="module")
def upright() -> np.ndarray:
    return cv2.imread(str(SAMPLE_IMAGE))[:, 64:448]  # 512 x 384: rotation changes the shape


def tagged(upright: np.ndarray, orientation: int = 6) -> bytes:
    """A JPEG that shows ``upright`` once its tag is applied: the pixels are stored turned the other way."""
    stored = {1: upright, 6: cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)}[orientation]
    return attacks.exif_jpeg(stored, orientation)


def test_orientation_6_reads_upright(upright, tmp_path):
    path = tmp_path / "phone.jpg"
    path.write_bytes(tagged(upright))
    image = read_image(path)
    assert image.shape == upright.shape
    assert np.abs(image.astype(int) - upright).mean() < 4  # JPEG loss only
    assert np.array_equal(decode_image(path.read_bytes()), image)
    ignored = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert ignored.shape == upright.shape[1::-1] + (3,)  # the stored pixels really are turned


def test_orientation_6_gives_the_upright_pose(upright):
    estimator = HeadPoseEstimator(num_threads=1)
    (face,) = estimator.predict_image(decode_image(tagged(upright)))
    (reference,) = estimator.predict_image(decode_image(tagged(upright, 1)))
    assert np.allclose(face.pose, reference.pose, atol=3.0), (face.pose, reference.pose)
    stored = cv2.imdecode(np.frombuffer(tagged(upright), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    turned = estimator.predict_image(stored)
    assert not turned or abs(turned[0].pose.roll - reference.pose.roll) > 20  # what ignoring the tag gave
