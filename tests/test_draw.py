"""Drawn axes and cube: the package's angle convention, checked on synthetic poses and real 3D landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from qa_headpose.core.angles import ypr_to_matrix
from qa_headpose.inference.draw import (
    AXIS_COLORS,
    cube_points,
    draw_axes,
    draw_cube,
    draw_face,
    head_axes,
    project_axes,
    text_box,
)


def _canvas() -> np.ndarray:
    return np.zeros((100, 100, 3), np.uint8)


def test_zero_pose_axes_point_right_up_and_at_the_camera():
    np.testing.assert_allclose(project_axes((0, 0, 0), 40), [[40, 0], [0, -40], [0, 0]], atol=1e-9)


@pytest.mark.parametrize(
    "pose, axis, check",
    [
        ((30, 0, 0), 2, lambda d: d[0] < -10),  # yaw > 0: the nose (z) swings to the image left
        ((-30, 0, 0), 2, lambda d: d[0] > 10),
        ((0, 30, 0), 2, lambda d: d[1] < -10),  # pitch > 0: the nose goes up (image y down)
        ((0, 0, 30), 1, lambda d: d[0] > 10),  # roll > 0: the top of the head turns clockwise
        ((0, 0, 30), 0, lambda d: d[1] > 10),  # ... so the x axis (subject's left) dips
    ],
)
def test_axis_directions_follow_the_angles_doc(pose, axis, check):
    assert check(project_axes(pose, 40)[axis])


def test_head_axes_are_the_rows_of_the_rotation():
    pose = (23.0, -11.0, 37.0)
    axes = head_axes(pose)
    np.testing.assert_allclose(axes, ypr_to_matrix(pose))
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-12)


def test_head_axes_match_real_3d_landmarks(aflw_dir):
    """On AFLW2000, the head rotation fitted to the 68 3D landmarks is the drawn one (rows of R)."""
    scipy_io = pytest.importorskip("scipy.io")
    from qa_headpose.core.angles import pose_para_to_ypr

    clouds, poses = [], []
    for path in sorted(aflw_dir.glob("*.mat"))[:300]:
        mat = scipy_io.loadmat(str(path))
        pose = pose_para_to_ypr(mat["Pose_Para"])
        if np.all(np.abs(pose) <= 99):
            # Image x right, y down -> camera frame x right, y up (z already points at the camera).
            pts = mat["pt3d_68"].astype(np.float64) * np.array([[1], [-1], [1]])
            pts -= pts.mean(axis=1, keepdims=True)
            clouds.append(pts / np.linalg.norm(pts))
            poses.append(pose)
    poses = np.array(poses)
    frontal = np.all(np.abs(poses) < 6, axis=1)
    assert frontal.sum() >= 3
    reference = np.mean([c for c, f in zip(clouds, frontal) if f], axis=0)
    errors = []
    for cloud, pose in zip(clouds, poses):
        u, _, vt = np.linalg.svd(cloud @ reference.T)  # Kabsch: cloud ~ H @ reference
        h = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
        drawn = head_axes(pose).T  # columns = the head's axes in the camera frame
        errors.append(np.degrees(np.arccos(np.clip((np.trace(h.T @ drawn) - 1) / 2, -1, 1))))
    assert np.median(errors) < 5.0


def test_draw_axes_colours_the_pixels_in_place():
    image = _canvas()
    out = draw_axes(image, (0, 0, 0), (50, 50), 40, thickness=2)
    assert out is image
    assert tuple(image[50, 85]) == AXIS_COLORS[0]  # x: red, to the right
    assert tuple(image[15, 50]) == AXIS_COLORS[1]  # y: green, up
    assert not image[90:, :].any()


def test_draw_cube_at_zero_pose_is_a_square():
    p = cube_points((0, 0, 0), (50, 50), 40)
    np.testing.assert_allclose(p[:4], p[4:])  # orthographic: front and back faces coincide
    np.testing.assert_allclose(p[4:].min(axis=0), [30, 30])
    image = draw_cube(_canvas(), (20, 10, 5), (50, 50), 40)
    assert image.any()


def test_draw_face_and_errors():
    image = draw_face(_canvas(), (20, 20, 80, 80), (10, -5, 3), mode="both", label="x")
    assert image.any()
    with pytest.raises(ValueError, match="mode"):
        draw_face(_canvas(), (20, 20, 80, 80), (0, 0, 0), mode="arrows")
    with pytest.raises(ValueError, match="uint8"):
        draw_axes(np.zeros((10, 10), np.uint8), (0, 0, 0), (5, 5), 3)


@pytest.mark.parametrize("scale", [0.4, 0.8, 1.2])
def test_label_reads_on_a_white_image(scale):
    """The label is white text on a filled dark box: on white pixels, the box is dark and the text bright."""
    image = np.full((200, 400, 3), 255, np.uint8)
    draw_face(image, (60, 80, 160, 180), (12.0, -7.0, 3.0), label="yaw 12 pitch -7 roll 3")
    # draw_face puts the label above the box, at the left edge; find it by its dark pixels.
    dark = np.all(image < 64, axis=2)
    rows, cols = np.nonzero(dark[:80])
    assert len(rows), "no dark label box above the face"
    region = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(int)
    gray = region.mean(axis=2)
    assert (gray < 64).mean() > 0.5  # mostly the dark box
    assert (gray > 192).sum() > 30  # with bright text on it
    x0, y0, x1, y1 = text_box("yaw 12 pitch -7 roll 3", (60, 74), 0.4)
    assert cols.min() <= x0 + 1 and y1 <= 80


def test_draw_text_box_stays_inside_a_face_at_the_top_edge():
    image = np.full((120, 200, 3), 255, np.uint8)
    draw_face(image, (5, 0, 100, 95), (0.0, 0.0, 0.0))
    dark_rows = np.nonzero(np.all(image < 64, axis=2).any(axis=1))[0]
    assert dark_rows.min() >= 0 and np.all(image[0:3, 5:50] < 64)  # the box starts at the image's top edge
