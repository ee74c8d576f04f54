import numpy as np
import pytest

from qa_headpose.core import angles


@pytest.mark.parametrize("ypr", [(0, 0, 0), (30, -20, 10), (-75, 40, -35), (89, 5, 5), (-10, 60, 80)])
def test_matrix_round_trip(ypr):
    np.testing.assert_allclose(angles.matrix_to_ypr(angles.ypr_to_matrix(ypr)), ypr, atol=1e-9)


def test_matrix_is_rotation_and_composes_in_documented_order():
    yaw, pitch, roll = 25.0, -15.0, 40.0
    r = angles.ypr_to_matrix((yaw, pitch, roll))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    expected = angles._rz(np.radians(roll)) @ angles._ry(np.radians(yaw)) @ angles._rx(np.radians(pitch))
    np.testing.assert_allclose(r, expected)


def test_pose_para_order_is_pitch_yaw_roll_radians():
    ypr = angles.pose_para_to_ypr(np.radians([10.0, 20.0, 30.0, 1, 2, 3, 4]))
    np.testing.assert_allclose(ypr, [20.0, 10.0, 30.0], atol=1e-5)


def test_flip_twice_is_identity_and_matches_mirrored_matrix():
    ypr = np.array([33.0, -12.0, 21.0], np.float32)
    np.testing.assert_allclose(angles.flip_pose(angles.flip_pose(ypr)), ypr)
    mirror = np.diag([-1.0, 1.0, 1.0])
    flipped = angles.matrix_to_ypr(mirror @ angles.ypr_to_matrix(ypr) @ mirror)
    np.testing.assert_allclose(angles.flip_pose(ypr), flipped, atol=1e-4)


def test_flip_batch():
    poses = np.array([[10, 20, 30], [-5, 6, -7]], np.float32)
    np.testing.assert_allclose(angles.flip_pose(poses), [[-10, 20, -30], [5, 6, 7]])


def test_in_plane_rotation_changes_roll_only_for_frontal_face_and_round_trips():
    frontal = np.array([0.0, 0.0, 5.0])
    np.testing.assert_allclose(angles.rotate_pose_in_plane(frontal, 15.0), [0.0, 0.0, -10.0], atol=1e-4)
    ypr = np.array([40.0, -25.0, 10.0])
    back = angles.rotate_pose_in_plane(angles.rotate_pose_in_plane(ypr, 17.0), -17.0)
    np.testing.assert_allclose(back, ypr, atol=1e-3)
    # The new label is exactly M @ Rz(-theta).
    theta = 17.0
    expected = angles.ypr_to_matrix(ypr) @ angles._rz(np.radians(-theta))
    np.testing.assert_allclose(angles.ypr_to_matrix(angles.rotate_pose_in_plane(ypr, theta)), expected, atol=1e-6)


def _facing(ypr):
    """Where the face points in the camera frame (x right, y up, z to the viewer)."""
    return angles.ypr_to_matrix(ypr).T @ np.array([0.0, 0.0, 1.0])


def test_documented_signs_of_the_facing_direction():
    assert _facing((30, 0, 0))[0] < -0.4  # yaw > 0: towards the image left
    assert _facing((0, 30, 0))[1] > 0.4  # pitch > 0: up
    right_eye_axis = angles.ypr_to_matrix((0, 0, 30)).T @ np.array([1.0, 0.0, 0.0])
    assert right_eye_axis[1] < -0.4  # roll > 0: clockwise on screen, image-right side lower


@pytest.mark.parametrize("ypr", [(60, 10, 0), (-70, -20, 15), (30, 40, -10)])
def test_in_plane_rotation_rotates_the_facing_direction_on_screen(ypr):
    theta = 15.0
    before, after = _facing(ypr), _facing(angles.rotate_pose_in_plane(ypr, theta))
    c, s = np.cos(np.radians(theta)), np.sin(np.radians(theta))
    expected = np.array([c * before[0] - s * before[1], s * before[0] + c * before[1], before[2]])
    np.testing.assert_allclose(after, expected, atol=1e-5)


def test_rotation_sign_matches_landmarks_on_real_faces(aflw_faces):
    """Roll > 0 means the eye line tilts clockwise on screen, the sign rotate_pose_in_plane assumes."""
    import scipy.io

    from tests.conftest import AFLW_DIR

    rolls, tilts = [], []
    for name in sorted(p.stem for p in AFLW_DIR.glob("*.mat"))[:200]:
        mat = scipy.io.loadmat(str(AFLW_DIR / f"{name}.mat"))
        yaw, _, roll = angles.pose_para_to_ypr(mat["Pose_Para"][0])
        left, right = mat["pt3d_68"][:2, 36:42].mean(1), mat["pt3d_68"][:2, 42:48].mean(1)
        if abs(yaw) < 30:
            rolls.append(roll)
            tilts.append(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    slope = np.polyfit(rolls, tilts, 1)[0]
    assert np.corrcoef(rolls, tilts)[0, 1] > 0.9 and 0.8 < slope < 1.2


def test_mae_protocol():
    pred = np.array([[1, 2, 3], [3, 2, 1]], float)
    true = np.zeros((2, 3))
    m = angles.mean_absolute_errors(pred, true)
    assert m == {"yaw": 2.0, "pitch": 2.0, "roll": 2.0, "mean": 2.0, "count": 2}
    with pytest.raises(ValueError, match="Expected two"):
        angles.mean_absolute_errors(np.zeros((2, 3)), np.zeros((3, 3)))


def test_within_limit():
    mask = angles.within_limit(np.array([[0, 0, 0], [99, -99, 0], [100, 0, 0], [np.nan, 0, 0]]))
    assert mask.tolist() == [True, True, False, False]


def test_headpose_order():
    pose = angles.from_model_output(np.array([1.5, -2.5, 3.5]))
    assert pose == angles.HeadPose(yaw=1.5, pitch=-2.5, roll=3.5)
    assert angles.ANGLE_ORDER == ("yaw", "pitch", "roll") == pose._fields


# ---------------------------------------------------------------- found by mutation testing (docs/testing.md)
def test_flip_pose_leaves_its_input_alone_and_returns_float32():
    given = np.array([[10.0, 5.0, -3.0], [1.0, 2.0, 3.0]], np.float32)
    flipped = angles.flip_pose(given)
    assert given.tolist() == [[10.0, 5.0, -3.0], [1.0, 2.0, 3.0]]  # not flipped in place
    assert flipped.dtype == np.float32 and flipped.tolist() == [[-10.0, 5.0, 3.0], [-1.0, 2.0, -3.0]]
    assert angles.flip_pose([30, 20, 10]).dtype == np.float32  # ints and float64 come back float32 too


def test_average_with_mirror_flips_the_mirror_pass_back():
    direct = np.array([[10.0, 4.0, 6.0]], np.float32)
    of_mirror = np.array([[-14.0, 2.0, -2.0]], np.float64)  # the mirror image: yaw and roll negated
    mean = angles.average_with_mirror(direct, of_mirror)
    assert mean.dtype == np.float32 and mean.tolist() == [[12.0, 3.0, 4.0]]


def test_from_model_output_reads_a_row_and_its_saturation():
    pose = angles.from_model_output(np.array([[1.5, -2.25, 3.0]], np.float32))  # one row of a batch
    assert tuple(pose) == (1.5, -2.25, 3.0) and type(pose[0]) is float and not pose.saturated
    assert angles.from_model_output([1, 2, 3], saturated=np.array([False, True, False])).saturated
    assert not angles.from_model_output([1, 2, 3], saturated=np.array([False, False, False])).saturated


def test_label_transforms_return_float32_and_take_a_row_of_a_batch():
    assert angles.pose_para_to_ypr(np.radians([[10.0, 20.0, 30.0, 0, 0, 0, 1]])).dtype == np.float32
    assert angles.rotate_pose_in_plane(np.array([10.0, 20.0, 30.0]), 15.0).dtype == np.float32
    np.testing.assert_array_equal(angles.ypr_to_matrix([[10, 20, 30]]), angles.ypr_to_matrix([10, 20, 30]))


def test_mae_uses_differences_and_checks_shapes():
    pred = np.array([[10.0, -4.0, 2.0], [0.0, 0.0, 0.0]])
    true = np.array([[7.0, -5.0, 2.0], [1.0, 2.0, -3.0]])
    got = angles.mean_absolute_errors(pred, true)
    assert (got["yaw"], got["pitch"], got["roll"]) == (2.0, 1.5, 1.5) and got["mean"] == pytest.approx(5 / 3)
    assert angles.mean_absolute_errors(pred[:1], true[:1])["count"] == 1  # one face is enough
    for bad_pred, bad_true in ((np.zeros((0, 3)), np.zeros((0, 3))), (np.zeros(3), np.zeros(3))):
        with pytest.raises(ValueError):
            angles.mean_absolute_errors(bad_pred, bad_true)


def test_headpose_repr_replace_pickle_and_array():
    import pickle

    pose = angles.HeadPose(1.5, -2.0, 3.25)
    assert repr(pose) == "HeadPose(yaw=1.5, pitch=-2.0, roll=3.25)"
    assert repr(pose._replace(saturated=True)) == "HeadPose(yaw=1.5, pitch=-2.0, roll=3.25, saturated=True)"
    moved = pose._replace(pitch=7.0)
    assert tuple(moved) == (1.5, 7.0, 3.25) and not moved.saturated and isinstance(moved, angles.HeadPose)
    for p in (pose, angles.HeadPose(1.0, 2.0, 3.0, saturated=True)):
        again = pickle.loads(pickle.dumps(p))
        assert type(again) is angles.HeadPose and tuple(again) == tuple(p) and again.saturated == p.saturated
    array = pose.as_array()
    assert array.dtype == np.float32 and array.tolist() == [1.5, -2.0, 3.25]
