"""Video helpers: One-Euro filters (on the pose angles), box-overlap tracking, reading and writing video."""

from __future__ import annotations

import numpy as np
import pytest

from qa_headpose.core.angles import HeadPose
from qa_headpose.core.errors import DataError
from qa_headpose.inference.detect import FaceResult
from qa_headpose.inference.video import (
    FaceTracker,
    OneEuroFilter,
    PoseFilter,
    SmoothConfig,
    VideoSink,
    iter_frames,
    open_camera,
    open_video,
)


def _face(x: float, y: float, pose=(0.0, 0.0, 0.0), side: float = 40.0) -> FaceResult:
    return FaceResult((x, y, x + side, y + side), 0.9, HeadPose(*pose))


def test_one_euro_keeps_a_constant_and_lags_a_step():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert f(np.array([5.0]), 0.0)[0] == 5.0
    assert f(np.array([5.0]), 0.1)[0] == pytest.approx(5.0)
    out = [f(np.array([15.0]), 0.1 * i)[0] for i in range(2, 8)]
    assert all(5 < a < b < 15 for a, b in zip(out, out[1:]))


def test_pose_filter_reduces_jitter():
    rng = np.random.default_rng(0)
    f = PoseFilter(min_cutoff=1.0, beta=0.0)
    raw = np.array([20.0, -5.0, 3.0]) + rng.normal(0, 3, (60, 3))
    out = np.array([f(HeadPose(*p), i / 30) for i, p in enumerate(raw)])
    assert np.std(out[20:], axis=0).max() < 0.5 * np.std(raw[20:], axis=0).min()
    np.testing.assert_allclose(out[20:].mean(axis=0), [20, -5, 3], atol=2.0)


def test_pose_filter_takes_the_short_way_across_180_for_pitch_and_roll():
    f = PoseFilter(min_cutoff=1.0, beta=0.0)
    out = [f(HeadPose(0.0, 179.0 if i % 2 else -179.0, 179.0 if i % 2 else -179.0), i / 30) for i in range(30)]
    # Averaging the numbers would pull pitch and roll towards 0; on the circle they stay near +-180.
    assert min(min(abs(p.pitch), abs(p.roll)) for p in out) > 177
    assert max(max(abs(p.pitch), abs(p.roll)) for p in out) <= 180


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("yaw", [85.0, 89.0, 90.0, 91.0, 95.0, 99.0, 99.21875])
def test_pose_filter_keeps_a_large_yaw_on_its_branch(yaw, sign):
    """A still head at |yaw| 85-99 comes back at that yaw, not as 180 - yaw with pitch and roll flipped."""
    f = PoseFilter(min_cutoff=1.0, beta=0.02)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (45, 3))
    raw = np.array([sign * yaw, 10.0, -5.0]) + noise
    out = np.array([f(HeadPose(*p), i / 30) for i, p in enumerate(raw)])
    assert np.all(np.sign(out[:, 0]) == sign)
    np.testing.assert_allclose(out[:, 0], sign * yaw, atol=0.5)
    np.testing.assert_allclose(out[:, 1], 10.0, atol=0.5)  # pitch and roll stay, not 180 away
    np.testing.assert_allclose(out[:, 2], -5.0, atol=0.5)


@pytest.mark.parametrize("start, end", [(-95.0, 95.0), (99.0, -99.0), (-85.0, 90.0), (92.0, 85.0)])
def test_pose_filter_turns_through_the_front_between_large_yaws(start, end):
    """A sign change of yaw goes through 0 (the face), never round the back of the head (+-180)."""
    f = PoseFilter(min_cutoff=1.0, beta=0.02)
    poses = [HeadPose(start, 3.0, -2.0)] * 10 + [HeadPose(end, 3.0, -2.0)] * 60
    yaws = np.array([f(p, i / 30).yaw for i, p in enumerate(poses)])
    lo, hi = min(start, end), max(start, end)
    assert np.all((yaws >= lo - 1e-9) & (yaws <= hi + 1e-9))  # always between the two inputs
    assert np.all(np.diff(yaws[9:]) * np.sign(end - start) >= 0)  # moving one way, from start to end
    assert yaws[-1] == pytest.approx(end, abs=0.5)
    # The same with a ramp frame by frame (a head turning at 450 deg/s).
    f = PoseFilter(min_cutoff=1.0, beta=0.02)
    ramp = np.linspace(start, end, 31)
    yaws = np.array([f(HeadPose(y, 0.0, 0.0), i / 30).yaw for i, y in enumerate(ramp)])
    assert np.all((yaws >= lo - 1e-9) & (yaws <= hi + 1e-9))


def test_pose_filter_passes_saturation_through():
    f = PoseFilter()
    assert not f(HeadPose(10.0, 0.0, 0.0), 0.0).saturated
    assert f(HeadPose(99.21875, 0.0, 0.0, saturated=True), 1 / 30).saturated
    assert not f(HeadPose(98.0, 0.0, 0.0), 2 / 30).saturated


def test_pose_filter_follows_a_fast_turn_with_beta():
    slow, fast = PoseFilter(1.0, 0.0), PoseFilter(1.0, 0.05)
    for f in (slow, fast):
        f(HeadPose(0, 0, 0), 0.0)
    a, b = slow(HeadPose(40, 0, 0), 1 / 30), fast(HeadPose(40, 0, 0), 1 / 30)
    assert 0 < a.yaw < b.yaw < 40


def test_tracker_keeps_ids_by_overlap():
    tracker = FaceTracker()
    first = tracker.update([_face(10, 10), _face(200, 10)], 0.0)
    assert [r.face for r in first] == [0, 1]
    # Same faces moved a little and listed in the other order.
    second = tracker.update([_face(205, 12), _face(14, 11)], 0.1)
    assert [r.face for r in second] == [1, 0]
    third = tracker.update([_face(400, 300)], 0.2)
    assert [r.face for r in third] == [2]


def test_tracker_ends_tracks_after_max_missed_frames():
    tracker = FaceTracker(max_missed=2)
    tracker.update([_face(10, 10)], 0.0)
    for i in range(3):
        tracker.update([], 0.1 * (i + 1))
    assert [r.face for r in tracker.update([_face(10, 10)], 0.5)] == [1]


def test_tracker_smooths_when_configured():
    tracker = FaceTracker(SmoothConfig(min_cutoff=0.5, beta=0.0, box_beta=0.0))
    tracker.update([_face(10, 10, (0, 0, 0))], 0.0)
    (r,) = tracker.update([_face(30, 10, (30, 0, 0))], 1 / 30)
    assert 0 < r.pose.yaw < 30
    assert 10 < r.box[0] < 30
    with pytest.raises(ValueError):
        SmoothConfig(min_cutoff=0)


def test_video_sink_round_trip(tmp_path):
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, 10)
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(7)]
    for frame in frames:
        sink.write(frame)
    assert not path.exists()  # written to a temporary name until closed
    sink.close()
    capture = open_video(path)
    read = list(iter_frames(capture))
    capture.release()
    assert len(read) == 7 and read[0][1].shape == (48, 64, 3)
    assert list(tmp_path.iterdir()) == [path]
    # A folder that does not exist yet is made (predict --output DIR with a video as the first input).
    sink = VideoSink(tmp_path / "new" / "out.avi", 10)
    sink.write(frames[0])
    sink.close()
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["out.avi"]


def test_video_sink_errors(tmp_path):
    with pytest.raises(ValueError, match="must end in"):
        VideoSink(tmp_path / "out.gif", 10)
    sink = VideoSink(tmp_path / "out.avi", 10)
    sink.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="32x32"):
        sink.write(np.zeros((16, 32, 3), np.uint8))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_open_errors(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="Cannot open video"):
        open_video(bad)
    # A real video cut after its header: OpenCV opens it, but no frame decodes.
    sink = VideoSink(tmp_path / "whole.mp4", 10)
    for i in range(5):
        sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
    sink.close()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((tmp_path / "whole.mp4").read_bytes()[:1000])
    with pytest.raises(DataError, match="No frame could be read"):
        open_video(cut)
    capture = open_video(tmp_path / "whole.mp4")  # the check reads a frame; the capture starts at frame 0
    frames = [frame for _, frame in iter_frames(capture)]
    capture.release()
    assert len(frames) == 5 and frames[0].mean() < 5
    with pytest.raises(DataError, match="Not a file"):
        open_video(tmp_path / "missing.mp4")
    with pytest.raises(DataError, match="camera 99"):
        open_camera(99)
