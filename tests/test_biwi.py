"""BIWI labels, frames and their angle convention, on ../shared/data/BIWI_sample (skipped without it)."""

from __future__ import annotations

import io
import tarfile

import cv2
import numpy as np
import pytest
from conftest import BIWI_DIR, require

from qa_headpose.core.errors import DataError
from qa_headpose.datasets import biwi
from qa_headpose.datasets.load import load_faces

SEQ = "01"


@pytest.fixture(scope="module")
def biwi_dir():
    return require(BIWI_DIR)


@pytest.fixture(scope="module")
def labels(biwi_dir):
    return biwi.load_biwi_labels(biwi_dir / biwi.LABEL_ARCHIVE)


@pytest.fixture(scope="module")
def seq_dir(biwi_dir):
    return biwi_dir / "hpdb" / SEQ


def _fixed_box(image):
    """A face box around the sample's face (the subject barely moves in these frames)."""
    return np.array([305.0, 235.0, 385.0, 320.0], np.float32)


def _rgb_camera(seq_dir):
    """(K, R, t) of rgb.cal: intrinsics, and the depth -> rgb camera rotation and translation (mm)."""
    numbers = np.array((seq_dir / "rgb.cal").read_text().split(), np.float64)
    return numbers[:9].reshape(3, 3), numbers[13:22].reshape(3, 3), numbers[22:25]


def _raw_bins(biwi_dir, seq, frames):
    """The stored 6 values of some .bin entries (reads the archive only up to the last one)."""
    wanted = {f"{seq}/frame_{f:05d}_pose.bin": f for f in frames}
    found = {}
    with tarfile.open(biwi_dir / biwi.LABEL_ARCHIVE) as tar:
        for member in tar:
            if member.name in wanted:
                found[wanted[member.name]] = biwi.parse_pose_bin(tar.extractfile(member).read())
                if len(found) == len(wanted):
                    break
    return found


def test_label_archive_counts(labels):
    assert len(labels) == biwi.LABEL_COUNT == 15677
    assert sorted({seq for seq, _ in labels}) == [f"{i:02d}" for i in range(1, biwi.SEQUENCE_COUNT + 1)]
    per_seq = {seq: sum(1 for s, _ in labels if s == seq) for seq in ("01", "05", "17")}
    assert per_seq == {"01": 498, "05": 946, "17": 395}
    assert all(v.shape == (3,) and v.dtype == np.float32 for v in labels.values())


def test_bin_example_from_readme(biwi_dir, labels):
    raw = _raw_bins(biwi_dir, SEQ, [166])[166]
    np.testing.assert_allclose(raw[3:], [-9.60, -1.44, -1.32], atol=0.005)  # pitch, yaw, roll as stored
    # Package order and signs: (yaw, -pitch, roll).
    np.testing.assert_allclose(labels[("01", 166)], [-1.44, 9.60, -1.32], atol=0.005)
    assert ("01", 3) not in labels and ("01", 4) in labels


def test_pose_txt_matches_hopenet_formula_and_neighbour_bin(seq_dir, labels):
    ypr = biwi.read_biwi_pose_txt(seq_dir / "frame_00003_pose.txt")
    np.testing.assert_allclose(ypr, [3.29, 7.61, -1.57], atol=0.01)  # Hopenet/FSA-Net values (README)
    # Frame 00004 (.bin) is the next frame of a still subject: all three angles agree.
    np.testing.assert_allclose(ypr, labels[(SEQ, 4)], atol=1.0)
    rotation, centre = biwi.read_pose_txt(seq_dir / "frame_00003_pose.txt")
    np.testing.assert_allclose(centre, [51.9358, 38.2631, 881.756])
    assert rotation.shape == (3, 3)


def test_missing_or_malformed_pose_raises(seq_dir, tmp_path):
    with pytest.raises(DataError, match="No BIWI pose file"):
        biwi.read_biwi_pose_txt(seq_dir / "frame_00166_pose.txt")
    bad = tmp_path / "frame_00001_pose.txt"
    bad.write_text("1 0 0\n0 1 0\n\n1 2 3\n")
    with pytest.raises(DataError, match="expected 9 rotation values"):
        biwi.read_biwi_pose_txt(bad)
    bad.write_text("2 0 0\n0 1 0\n0 0 1\n\n1 2 3\n")
    with pytest.raises(DataError, match="not a rotation"):
        biwi.read_biwi_pose_txt(bad)
    with pytest.raises(DataError, match="24 bytes"):
        biwi.parse_pose_bin(b"\0" * 20)


def test_missing_pose_frames_raise(biwi_dir, labels, tmp_path):
    # Frames 00166-00175 have no pose.txt: without the .bin archive they have no label.
    with pytest.raises(DataError, match=r"10 BIWI frame\(s\) have neither"):
        biwi.load_biwi_folder(biwi_dir / "hpdb", labels={}, face_boxes=_fixed_box)
    # A frame absent from the archive as well.
    seq = tmp_path / "hpdb" / SEQ
    seq.mkdir(parents=True)
    (seq / "frame_00002_rgb.png").symlink_to(biwi_dir / "hpdb" / SEQ / "frame_00166_rgb.png")
    with pytest.raises(DataError, match="frame_00002_rgb.png"):
        biwi.load_biwi_folder(tmp_path, labels=labels, face_boxes=_fixed_box)


def test_load_folder_with_box_callable(biwi_dir, labels):
    faces = biwi.load_biwi_folder(biwi_dir, labels=labels, face_boxes=_fixed_box)
    assert len(faces) == 11
    assert faces.names[:2] == ["01/frame_00003", "01/frame_00166"]
    np.testing.assert_allclose(faces.poses[0], biwi.read_biwi_pose_txt(biwi_dir / "hpdb/01/frame_00003_pose.txt"))
    np.testing.assert_allclose(faces.poses[1], labels[("01", 166)])
    crops = faces.crops(64)
    assert crops.shape == (11, 64, 64, 3) and crops.dtype == np.uint8
    # The archive beside hpdb/ is found on its own; frames without a face are skipped.
    calls = []

    def every_other(image):
        calls.append(1)
        return _fixed_box(image) if len(calls) % 2 else None

    some = biwi.load_biwi_folder(biwi_dir / "hpdb", face_boxes=every_other)
    assert len(some) == 6 and some.names[0] == "01/frame_00003"
    with pytest.raises(DataError, match="No face found"):
        biwi.load_biwi_folder(biwi_dir, labels=labels, face_boxes=lambda image: None)


def test_load_faces_reads_a_biwi_folder_with_the_detector(biwi_dir, labels, seq_dir):
    assert biwi.is_biwi_folder(biwi_dir) and biwi.is_biwi_folder(biwi_dir / "hpdb" / SEQ)
    faces = load_faces(biwi_dir)
    assert len(faces) == 11 and faces.names[1] == "01/frame_00166"
    np.testing.assert_allclose(faces.poses[1], labels[(SEQ, 166)])
    # The detector's box lies on the face: the head centre of frame 00003 (pose.txt,
    # projected with rgb.cal) falls inside it, near its middle.
    face_box = biwi.detector_face_boxes()
    box = face_box(cv2.imread(str(seq_dir / "frame_00003_rgb.png")))
    k, r_ext, t_ext = _rgb_camera(seq_dir)
    _, centre = biwi.read_pose_txt(seq_dir / "frame_00003_pose.txt")
    c = r_ext @ centre + t_ext
    u, v = k[0, 0] * c[0] / c[2] + k[0, 2], k[1, 1] * c[1] / c[2] + k[1, 2]
    assert box[0] < u < box[2] and box[1] < v < box[3]
    assert abs(u - (box[0] + box[2]) / 2) < 0.25 * (box[2] - box[0])


# ---------------------------------------------------------------- sign evidence
def _head_to_camera_ydown(ypr_deg):
    """Head rotation implied by the package's documented signs, in the Kinect frame (x right, y down, z away).

    yaw > 0 turns the nose (+z towards the camera, y up) to the image left, pitch > 0 up,
    roll > 0 clockwise on screen; roll acts first, then yaw, then pitch.
    """
    yaw, pitch, roll = np.radians(ypr_deg)

    def rot(axis, a):
        c, s = np.cos(a), np.sin(a)
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    h_yup = rot(0, -pitch) @ rot(1, -yaw) @ rot(2, -roll)
    flip = np.diag([1.0, -1.0, -1.0])  # (x right, y up, z towards camera) <-> Kinect frame
    return flip @ h_yup @ flip


def _read_depth_points(seq_dir, frame):
    """3D points (mm, Kinect depth frame) of BIWI's run-length coded frame_XXXXX_depth.bin."""
    raw = (seq_dir / f"frame_{frame:05d}_depth.bin").read_bytes()
    w, h = np.frombuffer(raw[:8], "<i4")
    depth, pos, p = np.zeros(w * h, np.float64), 8, 0
    while p < w * h:
        empty, full = np.frombuffer(raw[pos : pos + 8], "<i4")
        pos, p = pos + 8, p + empty
        depth[p : p + full] = np.frombuffer(raw[pos : pos + 2 * full], "<i2")
        pos, p = pos + 2 * full, p + full
    k = np.loadtxt(seq_dir / "depth.cal", max_rows=3)
    v, u = np.nonzero(depth.reshape(h, w) > 0)
    z = depth.reshape(h, w)[v, u]
    return np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], axis=1)


def test_pose_txt_is_head_to_camera_and_face_is_mirror_symmetric(seq_dir):
    """The depth scan of frame 00003 is most left-right symmetric in the head frame of our angles."""
    from scipy.spatial import cKDTree

    rotation, centre = biwi.read_pose_txt(seq_dir / "frame_00003_pose.txt")
    ypr = biwi.read_biwi_pose_txt(seq_dir / "frame_00003_pose.txt")
    # The documented signs rebuild the file's matrix exactly: R maps head to camera.
    np.testing.assert_allclose(_head_to_camera_ydown(ypr), rotation, atol=1e-4)

    points = _read_depth_points(seq_dir, 3)
    points = points[np.linalg.norm(points - centre, axis=1) < 110]  # the head, not the body

    def asymmetry(ypr_deg):
        head = (points - centre) @ _head_to_camera_ydown(ypr_deg)  # camera -> head frame
        dist, _ = cKDTree(head).query(head * [-1, 1, 1])
        return float(np.mean(np.minimum(dist, 20.0)))

    yaw, pitch, roll = ypr
    ours = asymmetry(ypr)
    assert ours < 0.8 * asymmetry([-yaw, pitch, roll])  # yaw sign
    assert ours < 0.8 * asymmetry([yaw, pitch, -roll])  # roll sign
    assert ours < 0.8 * asymmetry(-ypr)  # R vs R.T (every sign flipped)


def test_bin_yaw_sign_follows_the_nose_in_the_images(seq_dir, labels):
    """Frames 00166-00175 turn from bin yaw -1.4 to +6.6: the nose moves to the image left."""
    k, r_ext, t_ext = _rgb_camera(seq_dir)
    template_frame = cv2.imread(str(seq_dir / "frame_00170_rgb.png"), cv2.IMREAD_GRAYSCALE)
    x0, y0, x1, y1 = 335, 250, 365, 282  # the nose tip in frame 00170
    template = template_frame[y0:y1, x0:x1]
    frames = range(166, 176)
    raw = _raw_bins(seq_dir.parents[1], SEQ, frames)
    offsets, yaws = [], []
    for frame in frames:
        gray = cv2.imread(str(seq_dir / f"frame_{frame:05d}_rgb.png"), cv2.IMREAD_GRAYSCALE)
        score = cv2.matchTemplate(gray[180:340, 270:430], template, cv2.TM_CCOEFF_NORMED)
        nose_x = cv2.minMaxLoc(score)[3][0] + 270 + (x1 - x0) / 2
        centre = r_ext @ raw[frame][:3].astype(np.float64) + t_ext  # head centre, rgb camera frame
        offsets.append(nose_x - (k[0, 0] * centre[0] / centre[2] + k[0, 2]))
        yaws.append(labels[(SEQ, frame)][0])
    assert yaws[-1] - yaws[0] > 7
    # Nose left of the head centre as yaw grows: yaw > 0 = face turned to the image left.
    assert np.corrcoef(yaws, offsets)[0, 1] < -0.8


def test_tar_layout_errors(tmp_path):
    archive = tmp_path / "db_annotations.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("01/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataError, match="No SS/frame_XXXXX_pose.bin"):
        biwi.load_biwi_labels(archive)
    archive.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="Cannot read the BIWI label archive"):
        biwi.load_biwi_labels(archive)
    with pytest.raises(DataError, match="Not a file"):
        biwi.load_biwi_labels(tmp_path / "absent.tgz")
