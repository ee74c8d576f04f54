"""BIWI labels (datasets/biwi.py): pose.txt rotations and .bin values to (yaw, pitch, roll), the label archive,
folders mixing both, frames without a face, the detector's boxes.

Found by mutation testing (mutmut, docs/testing.md). Generated fixtures only (the sample photo for the
detector), so these run without ../shared/data and inside mutmut's copy; test_biwi.py checks the same readers
on the real BIWI sample, and the signs against the images.
"""

from __future__ import annotations

import io
import math
import struct
import tarfile

import cv2
import numpy as np
import pytest
from test_label_readers import write_image

from qa_headpose.core.errors import DataError
from qa_headpose.datasets import biwi
from qa_headpose.datasets.faceset import loose_crop


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def biwi_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The pose.txt matrix R of a (yaw, pitch, roll) label, degrees: R.T = Rz(-roll) Ry(-yaw) Rx(pitch)."""
    y, p, r = np.radians([yaw, pitch, roll])
    return (_rz(-r) @ _ry(-y) @ _rx(p)).T


@pytest.mark.parametrize("ypr", [(30, -20, 10), (-65, 40, -25), (5, 70, 50), (80, -5, -70)])
def test_biwi_rotation_gives_yaw_pitch_roll(ypr):
    out = biwi.rotation_to_ypr(biwi_rotation(*ypr))
    assert out.dtype == np.float32 and out.shape == (3,)
    np.testing.assert_allclose(out, ypr, atol=1e-4)
    np.testing.assert_allclose(biwi.rotation_to_ypr(biwi_rotation(*ypr).ravel()), ypr, atol=1e-4)


def test_biwi_bin_values_and_archive(tmp_path):
    values = np.array([11.0, -22.0, 900.0, 12.5, -30.25, 7.75], np.float32)  # x, y, z mm; pitch, yaw, roll
    out = biwi.bin_to_ypr(values)
    assert out.dtype == np.float32
    assert out.tolist() == [-30.25, -12.5, 7.75]
    assert biwi.bin_to_ypr(values[None]).tolist() == [-30.25, -12.5, 7.75]  # any shape of 6 values
    payload = struct.pack("<6f", *values)
    parsed = biwi.parse_pose_bin(payload)
    assert parsed.dtype == np.float32 and parsed.tolist() == values.tolist()
    for bad, message in [
        (payload[:20], ".bin: expected 24 bytes (6 float32). Received: 20 bytes"),
        (payload + b"\0", ".bin: expected 24 bytes (6 float32). Received: 25 bytes"),
        (struct.pack("<6f", 1, 2, 3, 4, float("nan"), 6), ".bin: non-finite values [1.0, 2.0, 3.0, 4.0, nan, 6.0]"),
    ]:
        with pytest.raises(DataError) as info:
            biwi.parse_pose_bin(bad)
        assert str(info.value) == message
    archive = tmp_path / "db_annotations.tgz"
    entries = {
        "01/frame_00003_pose.bin": struct.pack("<6f", 0, 0, 0, 1, 2, 3),
        "db/12/frame_00100_pose.bin": struct.pack("<6f", 0, 0, 0, -4, 5, -6),
        "01/frame_3_pose.bin": payload,  # not a frame number of 5 digits: not a label
        "01/frame_00004_pose.txt": payload,
        "x01/frame_00005_pose.bin": payload,  # the sequence must be its own folder
    }
    with tarfile.open(archive, "w:gz") as tar:
        directory = tarfile.TarInfo("02/frame_00001_pose.bin")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    labels = biwi.load_biwi_labels(archive)
    assert sorted(labels) == [("01", 3), ("12", 100)]
    assert labels[("01", 3)].tolist() == [2, -1, 3] and labels[("12", 100)].tolist() == [5, 4, -6]
    with tarfile.open(tmp_path / "bad.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("05/frame_00009_pose.bin")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"abcd"))
    with pytest.raises(DataError) as info:
        biwi.load_biwi_labels(tmp_path / "bad.tgz")
    assert str(info.value).startswith(f"{tmp_path / 'bad.tgz'}:05/frame_00009_pose.bin: expected 24 bytes")
    with tarfile.open(tmp_path / "none.tgz", "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("readme"), io.BytesIO(b""))
    with pytest.raises(DataError) as info:
        biwi.load_biwi_labels(tmp_path / "none.tgz")
    assert str(info.value) == f"No SS/frame_XXXXX_pose.bin entry in {tmp_path / 'none.tgz'}"
    (tmp_path / "broken.tgz").write_bytes(archive.read_bytes()[:40])
    with pytest.raises(DataError, match="^Cannot read the BIWI label archive .*broken.tgz: "):
        biwi.load_biwi_labels(tmp_path / "broken.tgz")
    with pytest.raises(DataError) as info:
        biwi.load_biwi_labels(tmp_path / "missing.tgz")
    assert str(info.value) == f"Not a file: {tmp_path / 'missing.tgz'}"


def write_pose_txt(path, rotation: np.ndarray, centre=(12.5, -30.0, 950.0)) -> None:
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in rotation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{rows} \n\n{' '.join(map(str, centre))} \n")


def test_biwi_pose_txt(tmp_path):
    path = tmp_path / "frame_00001_pose.txt"
    rotation = biwi_rotation(-35, 15, 20)
    write_pose_txt(path, rotation)
    read, centre = biwi.read_pose_txt(path)
    np.testing.assert_allclose(read, rotation, atol=1e-6)
    assert centre.tolist() == [12.5, -30.0, 950.0]
    np.testing.assert_allclose(biwi.read_biwi_pose_txt(path), [-35, 15, 20], atol=1e-3)
    # 6 significant digits are a rotation; a 1e-2 error or a reflection is not.
    for bad in (rotation * 1.01, rotation @ np.diag([1, 1, -1])):
        write_pose_txt(path, bad)
        with pytest.raises(DataError, match=r"the 3x3 matrix is not a rotation \(\|R R\^T - I\| = "):
            biwi.read_pose_txt(path)
    write_pose_txt(path, rotation * (1 + 9e-4 / 2))  # |R R^T - I| = 9e-4: within the tolerance
    biwi.read_pose_txt(path)
    path.write_text("1 0 0\n0 1 0\n0 0 1\n\n1 2\n")
    with pytest.raises(DataError) as info:
        biwi.read_pose_txt(path)
    assert str(info.value) == f"{path}: expected 9 rotation values and 3 centre values. Received: 11 numbers"
    path.write_text("1 0 0\n0 1 0\n0 0 1\n\n1 2 nan\n")
    with pytest.raises(DataError, match="Received: 12 numbers"):
        biwi.read_pose_txt(path)
    path.write_text("1 0 0\n0 one 0\n")
    with pytest.raises(DataError, match=r"frame_00001_pose.txt: not a BIWI pose file \("):
        biwi.read_pose_txt(path)
    with pytest.raises(DataError) as info:
        biwi.read_pose_txt(tmp_path / "none.txt")
    assert str(info.value) == f"No BIWI pose file: {tmp_path / 'none.txt'}"


def test_biwi_folder_labels_from_pose_txt_or_the_archive(tmp_path, caplog):
    """Sequence 01 has pose.txt files, sequence 02 only the archive's labels; frame 2 of 02 has no face."""
    hpdb = tmp_path / "hpdb"
    truth = {("01", 1): (20, -10, 5), ("01", 12): (-40, 25, -15), ("02", 2): (15, 30, -45), ("02", 3): (0, 0, 0)}
    for seed, ((sequence, number), ypr) in enumerate(truth.items()):
        write_image(hpdb / sequence / f"frame_{number:05d}_rgb.png", seed=seed)
        if sequence == "01":
            write_pose_txt(hpdb / sequence / f"frame_{number:05d}_pose.txt", biwi_rotation(*ypr))
    (hpdb / "02" / "frame_00002_depth.png").write_bytes(b"")  # not a frame
    labels = {("02", 2): np.array([[15, 30, -45]]), ("02", 3): np.zeros((1, 3))}  # any shape of 3 values
    calls = []

    def face_boxes(image):
        calls.append(image.shape)
        return None if len(calls) == 3 else np.array([[40, 30, 100, 90]])  # any shape of 4 values

    with caplog.at_level("WARNING", logger="qa_headpose.datasets.biwi"):
        faces = biwi.load_biwi_folder(hpdb, labels=labels, face_boxes=face_boxes, workers=2)
    assert calls == [(120, 160, 3)] * 4
    assert faces.names == ["01/frame_00001", "01/frame_00012", "02/frame_00003"]
    np.testing.assert_allclose(faces.poses, [truth[("01", 1)], truth[("01", 12)], truth[("02", 3)]], atol=1e-3)
    assert caplog.messages == [f"No face found in 1 of 4 BIWI frames, e.g. {hpdb / '02' / 'frame_00002_rgb.png'}"]
    crop, box = loose_crop(cv2.imread(str(hpdb / "01" / "frame_00001_rgb.png")), np.array([40, 30, 100, 90]))
    np.testing.assert_array_equal(faces.images[0], crop)
    np.testing.assert_array_equal(faces.boxes[0], box)
    # Every frame has its pose.txt: the label archive is not read (a missing one is no error).
    assert len(biwi.load_biwi_folder(hpdb / "01", labels=tmp_path / "none.tgz", face_boxes=face_boxes)) == 2
    assert biwi.is_biwi_folder(tmp_path) and biwi.is_biwi_folder(hpdb) and biwi.is_biwi_folder(hpdb / "01")
    assert not biwi.is_biwi_folder(tmp_path / "nowhere") and not biwi.is_biwi_folder(hpdb / "01" / "x")
    assert biwi.frame_key(hpdb / "02" / "frame_00003_rgb.png") == ("02", 3)
    with pytest.raises(DataError, match=r"^Not a BIWI frame name \(frame_XXXXX_rgb.png\): "):
        biwi.frame_key(hpdb / "02" / "frame_3_rgb.png")
    # The archive beside hpdb is read when labels is None; {} uses pose.txt only and names what is missing.
    with tarfile.open(tmp_path / biwi.LABEL_ARCHIVE, "w:gz") as tar:
        for (sequence, number), ypr in truth.items():
            data = struct.pack("<6f", 0, 0, 0, -ypr[1], ypr[0], ypr[2])
            info = tarfile.TarInfo(f"{sequence}/frame_{number:05d}_pose.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    box = lambda image: np.array([40, 30, 100, 90])  # noqa: E731
    for source in (None, tmp_path / biwi.LABEL_ARCHIVE, str(tmp_path / biwi.LABEL_ARCHIVE)):
        faces = biwi.load_biwi_folder(hpdb, labels=source, face_boxes=box)
        np.testing.assert_allclose(faces.poses, [truth[k] for k in sorted(truth)], atol=1e-3)
    with pytest.raises(DataError) as info:
        biwi.load_biwi_folder(hpdb, labels={}, face_boxes=box)
    assert str(info.value) == (
        "2 BIWI frame(s) have neither a _pose.txt nor a label in db_annotations.tgz: "
        "02/frame_00002_rgb.png, 02/frame_00003_rgb.png"
    )
    with pytest.raises(DataError) as info:
        biwi.load_biwi_folder(hpdb / "01", labels={}, face_boxes=lambda image: None)
    assert str(info.value) == f"No face found in any of the 2 BIWI frames below {hpdb / '01'}"
    with pytest.raises(DataError) as info:
        biwi.load_biwi_folder(tmp_path / "nowhere", face_boxes=box)
    assert str(info.value) == f"Not a folder: {tmp_path / 'nowhere'}"
    (hpdb / "01" / "x").mkdir()
    with pytest.raises(DataError) as info:
        biwi.load_biwi_folder(hpdb / "01" / "x", face_boxes=box)
    assert str(info.value) == f"No BIWI frame (frame_*_rgb.png) below {hpdb / '01' / 'x'}"
    # At most five missing frames are named, then "...".
    for count, tail in [(5, "03/frame_00004_rgb.png"), (6, "03/frame_00004_rgb.png ...")]:
        for number in range(count):
            write_image(tmp_path / "more" / "03" / f"frame_{number:05d}_rgb.png", 8, 8)
        with pytest.raises(DataError) as info:
            biwi.load_biwi_folder(tmp_path / "more", labels={}, face_boxes=box)
        assert str(info.value).startswith(f"{count} BIWI frame(s) have neither")
        assert str(info.value).endswith(tail)


def test_biwi_frames_get_their_box_from_the_face_detector(tmp_path):
    """Without a box callable, the package's detector finds the face of the sample photo; min_score applies."""
    from qa_headpose.inference import detect
    from qa_headpose.inference.registry import SAMPLE_IMAGE

    frame = cv2.imread(str(SAMPLE_IMAGE))
    (tmp_path / "07").mkdir()
    cv2.imwrite(str(tmp_path / "07" / "frame_00001_rgb.png"), frame)
    write_pose_txt(tmp_path / "07" / "frame_00001_pose.txt", biwi_rotation(10, -5, 3))
    faces = biwi.load_biwi_folder(tmp_path)
    (found,) = detect.FaceDetector().detect(frame, max_faces=1)
    expected = detect.crop_box_from_detection(found.box)
    np.testing.assert_array_equal(faces.boxes[0], loose_crop(frame, expected)[1])
    np.testing.assert_allclose(faces.poses[0], [10, -5, 3], atol=1e-3)
    # A lower bound lets more candidate boxes into the detector's weighted blend: about the same box.
    np.testing.assert_allclose(biwi.detector_face_boxes(min_score=found.score - 0.01)(frame), expected, atol=3)
    assert biwi.detector_face_boxes(min_score=min(found.score + 0.01, 1.0))(frame) is None
    with pytest.raises(DataError) as info:
        biwi.detector_face_boxes(min_score=1.0)
    assert str(info.value) == (
        "Cannot start the face detector for BIWI frames: min_score must be in (0, 1). Received: min_score=1.0"
    )
