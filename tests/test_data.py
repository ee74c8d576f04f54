import os

import numpy as np
import pytest

from qa_headpose.core import errors
from qa_headpose.datasets import faceset, mat, splits
from qa_headpose.datasets import npz as npz_io
from qa_headpose.inference import images
from qa_headpose.inference.preprocess import CROP_MARGIN, crop_face


def test_load_real_aflw_folder(aflw_faces, aflw_small):
    assert len(aflw_faces) == 24
    assert aflw_faces.poses.shape == (24, 3) and aflw_faces.boxes.shape == (24, 4)
    assert all(im.dtype == np.uint8 and im.ndim == 3 for im in aflw_faces.images)
    # image00002: Pose_Para (pitch, yaw, roll) radians -> our (yaw, pitch, roll) degrees
    import scipy.io

    para = scipy.io.loadmat(str(aflw_small / "image00002.mat"))["Pose_Para"][0]
    i = aflw_faces.names.index("image00002")
    np.testing.assert_allclose(aflw_faces.poses[i], np.degrees([para[1], para[0], para[2]]), atol=1e-4)


def test_loose_crop_keeps_fsanet_crop(aflw_small):
    """Cropping from the stored loose crop equals cropping the original image."""
    image = images.read_image(aflw_small / "image00002.jpg")
    _, box = mat.read_mat_label(aflw_small / "image00002.mat")
    loose, loose_box = faceset.loose_crop(image, box)
    direct = crop_face(image, box, 64).astype(int)
    via_loose = crop_face(loose, loose_box, 64).astype(int)
    assert np.abs(direct - via_loose).mean() < 4.0


def test_protocol_filter_and_committed_split(aflw_dir):
    faces = mat.load_mat_folder(aflw_dir).subset(range(300))
    kept, dropped = faceset.filter_protocol(faces)
    assert len(kept) + dropped == 300 and np.all(np.abs(kept.poses) <= 99)
    train, val = splits.split_train_val(kept)
    assert len(train) + len(val) == len(kept)
    assert not set(train.names) & set(val.names)
    assert all(splits.is_val_name(n) for n in val.names) and not any(splits.is_val_name(n) for n in train.names)
    assert 0.08 < len(val) / len(kept) < 0.25


def test_committed_split_file_matches_hash_rule():
    names = splits.read_split("aflw2000_val")
    assert len(names) == 228
    assert all(splits.is_val_name(n) for n in names)


def test_fsanet_npz_round_trip(tmp_path, aflw_faces):
    path = tmp_path / "faces.npz"
    npz_io.save_fsanet_npz(aflw_faces, path, size=64)
    with np.load(path) as npz:
        assert npz["image"].shape == (24, 64, 64, 3) and npz["image"].dtype == np.uint8
        np.testing.assert_allclose(npz["pose"], aflw_faces.poses)
    again = npz_io.load_fsanet_npz(path)
    # The FSA-Net crop of an FSA-Net crop is the crop itself.
    np.testing.assert_array_equal(again.crops(64), aflw_faces.crops(64))
    lo = CROP_MARGIN / (1 + 2 * CROP_MARGIN) * 64
    np.testing.assert_allclose(again.boxes[0], [lo, lo, 64 - lo, 64 - lo], atol=1e-4)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"pose": np.zeros((2, 3))}, "lacks the key"),
        ({"image": np.zeros((2, 64, 64, 3), np.uint8), "pose": np.zeros((3, 3))}, "must be"),
        ({"image": np.zeros((2, 64, 64, 3), np.float32), "pose": np.zeros((2, 3))}, "uint8"),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(errors.DataError, match=message):
        npz_io.load_fsanet_npz(path)


def test_bad_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(errors.DataError, match="Empty"):
        images.read_image(tmp_path / "empty.jpg")
    with pytest.raises(errors.DataError, match="decode"):
        images.read_image(tmp_path / "text.jpg")
    with pytest.raises(errors.DataError, match="No image with a .mat"):
        mat.load_mat_folder(tmp_path)
    import scipy.io

    scipy.io.savemat(str(tmp_path / "x.mat"), {"pt2d": np.ones((2, 5))})
    with pytest.raises(errors.DataError, match="Pose_Para"):
        mat.read_mat_label(tmp_path / "x.mat")


def test_read_image_converts_gray_rgba_16bit(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    # High and low bytes differ everywhere, so reading the wrong byte (or dividing by 256 vs 257) shows.
    gray16 = rng.integers(0, 2**16, (48, 64), dtype=np.uint16)
    bgr16 = rng.integers(0, 2**16, (20, 30, 3), dtype=np.uint16)
    assert ((gray16 >> 8) != (gray16 & 255)).mean() > 0.9
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    cv2.imwrite(str(tmp_path / "bgr16.png"), bgr16)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "ünïcode.png"), rgba[..., :3])
    expected = {
        "g16.png": np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, axis=2),
        "bgr16.png": (bgr16 >> 8).astype(np.uint8),
        "rgba.png": rgba[..., :3],
        "ünïcode.png": rgba[..., :3],
    }
    for name, pixels in expected.items():
        image = images.read_image(tmp_path / name)
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, pixels, err_msg=name)


def test_save_is_atomic_on_failure(tmp_path, aflw_faces, monkeypatch):
    """A write that fails after the data went to disk leaves the old file whole and no temporary file."""
    path = tmp_path / "out.npz"
    path.write_bytes(b"the previous file")
    written = {}

    def rename_fails(src, dst):
        written["bytes"] = os.path.getsize(src)  # the new file is complete under another name
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", rename_fails)
    with pytest.raises(OSError, match="rename failed"):
        npz_io.save_fsanet_npz(aflw_faces, path)
    assert written["bytes"] > 24 * 64 * 64 * 3  # the crops alone
    assert path.read_bytes() == b"the previous file" and list(tmp_path.iterdir()) == [path]
    monkeypatch.undo()

    def fsync_fails(fd):
        written["partial"] = os.fstat(fd).st_size
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="disk full"):
        npz_io.save_fsanet_npz(aflw_faces, path)
    assert written["partial"] > 0
    assert path.read_bytes() == b"the previous file" and list(tmp_path.iterdir()) == [path]
    monkeypatch.undo()
    npz_io.save_fsanet_npz(aflw_faces, path)
    assert len(npz_io.load_fsanet_npz(path)) == 24 and list(tmp_path.iterdir()) == [path]
