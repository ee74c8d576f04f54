"""Dataset label readers (datasets/mat, npz, pointing04, aflw_extra): order, signs, units, names, errors.

Found by mutation testing (mutmut, docs/testing.md); BIWI's readers are in test_biwi_labels.py. Every fixture is
generated here (a .mat, an npz, Pointing'04 files, CSVs, small images), so the tests run without
../shared/data, inside mutmut's copy of the repository too; the real-data checks of the same readers are in
test_data, test_w300lp, test_aflw_extra and test_generalization. Each angle in a fixture differs from the others
in value and sign, so a swap, a lost sign or a unit slip changes the result.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from qa_headpose.core.errors import DataError
from qa_headpose.datasets import aflw_extra, mat, npz, pointing04
from qa_headpose.datasets.faceset import loose_crop
from qa_headpose.inference.preprocess import CROP_MARGIN, landmark_box


def write_image(path, height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return cv2.imread(str(path))


# ---------------------------------------------------------------- .mat (300W-LP, AFLW2000)
PT2D = np.array([[30.0, 80.0, 55.0, -1.0], [40.0, 45.0, 90.0, -1.0]])  # the last point invisible


def save_mat(path, para, pt2d=PT2D) -> None:
    import scipy.io

    scipy.io.savemat(str(path), {"Pose_Para": np.asarray(para, np.float64)[None], "pt2d": pt2d})


def test_mat_label_is_yaw_pitch_roll_in_degrees(tmp_path):
    # Pose_Para is (pitch, yaw, roll) in radians, then translation and scale.
    save_mat(tmp_path / "a.mat", [0.1, -0.5, 0.3, 7.0, 8.0, 9.0, 1.5])
    pose, box = mat.read_mat_label(tmp_path / "a.mat")
    assert pose.dtype == np.float32 and pose.shape == (3,)
    np.testing.assert_allclose(pose, np.degrees([-0.5, 0.1, 0.3]), rtol=1e-6)
    np.testing.assert_array_equal(box, landmark_box(PT2D))
    assert box.tolist() == [30.0, 40.0, 80.0, 90.0]
    # Only the three angles must be finite; a NaN translation is no error.
    save_mat(tmp_path / "b.mat", [0.2, 0.4, -0.6, np.nan])
    np.testing.assert_allclose(mat.read_mat_label(tmp_path / "b.mat")[0], np.degrees([0.4, 0.2, -0.6]), rtol=1e-6)


def test_mat_label_errors_name_the_file_and_the_entry(tmp_path):
    import scipy.io

    path = tmp_path / "x.mat"
    both = {"Pose_Para": np.zeros((1, 7)), "pt2d": PT2D}
    for key in both:
        scipy.io.savemat(str(path), {k: v for k, v in both.items() if k != key})
        with pytest.raises(DataError) as info:
            mat.read_mat_label(path)
        assert str(info.value) == f"{path} has no '{key}' entry"
    for para in ([0.1, 0.2], [0.1, np.nan, 0.3], [np.inf, 0.2, 0.3, 4.0]):
        save_mat(path, para)
        with pytest.raises(DataError) as info:
            mat.read_mat_label(path)
        assert str(info.value) == f"{path}: Pose_Para must hold 3 finite angles. Received: {np.array(para[:3])}"
    save_mat(path, [0.1, 0.2, 0.3], pt2d=np.array([[1.0, -1.0], [2.0, -1.0]]))
    with pytest.raises(DataError) as info:
        mat.read_mat_label(path)
    assert str(info.value) == f"{path}: pt2d has fewer than 2 visible landmarks. Received: 1"
    path.write_bytes(b"MATLAB 5.0 not really")
    with pytest.raises(DataError, match=r"^Cannot read \.mat file .*x\.mat: "):
        mat.read_mat_label(path)


def test_mat_folder_reads_each_pair_in_name_order(tmp_path):
    paras = {"b": [0.1, -0.2, 0.3], "a": [-0.4, 0.5, -0.6], "sub/c": [0.7, 0.8, -0.9], "d": [0.2, 0.1, 0.0]}
    suffix = {"b": ".jpg", "a": ".png", "sub/c": ".jpg", "d": ".JPG"}
    pixels = {}
    for seed, (name, para) in enumerate(paras.items()):
        pixels[name] = write_image(tmp_path / f"{name}{suffix[name]}", seed=seed)
        save_mat(tmp_path / f"{name}.mat", para)
    write_image(tmp_path / "lonely.jpg")  # no .mat: not a face of the set
    seen = []
    faces = mat.load_mat_folder(tmp_path, workers=2, progress=lambda done, total: seen.append((done, total)))
    assert faces.names == ["a", "b", "d", "sub/c"]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for i, name in enumerate(faces.names):
        pitch, yaw, roll = paras[name]
        np.testing.assert_allclose(faces.poses[i], np.degrees([yaw, pitch, roll]), rtol=1e-6)
        # The loose crop holds the image's pixels around the landmark box (30..80 x 40..90 + margins).
        x0, y0 = (np.floor(faces.boxes[i][:2] - [30, 40])).astype(int) * -1
        assert faces.images[i].shape[2] == 3
        np.testing.assert_array_equal(faces.images[i][10, 10], pixels[name][y0 + 10, x0 + 10])
    with pytest.raises(DataError) as info:
        mat.load_mat_folder(tmp_path / "lonely.jpg")
    assert str(info.value) == f"Not a folder: {tmp_path / 'lonely.jpg'}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        mat.load_mat_folder(tmp_path / "empty")
    assert str(info.value) == f"No image with a .mat label beside it in {tmp_path / 'empty'}"


# ---------------------------------------------------------------- FSA-Net .npz
def test_fsanet_inner_box_is_the_landmark_box_of_the_crop():
    box = npz.fsanet_inner_box((64, 96))
    assert box.dtype == np.float32
    lo, hi = 0.6 / 2.2, 1.6 / 2.2  # a crop of side (1 + 2 * 0.6) w holds the box at 0.6 w from its edge
    np.testing.assert_allclose(box, [lo * 96, lo * 64, hi * 96, hi * 64], rtol=1e-6)
    np.testing.assert_allclose(npz.fsanet_inner_box((10, 20), margin=0.5), [5, 2.5, 15, 7.5], rtol=1e-6)
    assert CROP_MARGIN == 0.6


def test_fsanet_npz_round_trip_keeps_order_names_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    poses = np.array([[10.5, -20.25, 30], [-40, 50, -60], [70, -80, 90]], np.float64)
    np.savez(tmp_path / "set.npz", image=images, pose=poses)
    faces = npz.load_fsanet_npz(tmp_path / "set.npz")
    assert faces.names == ["set:0", "set:1", "set:2"]
    assert faces.poses.dtype == np.float32
    np.testing.assert_array_equal(faces.poses, poses.astype(np.float32))
    for i in range(3):
        np.testing.assert_array_equal(faces.images[i], images[i])
        np.testing.assert_array_equal(faces.boxes[i], npz.fsanet_inner_box((24, 24)))
    npz.save_fsanet_npz(faces, tmp_path / "default.npz")
    with np.load(tmp_path / "default.npz") as saved:  # FSA-Net's layout: 64 px crops, float32 poses
        assert saved["image"].shape == (3, 64, 64, 3) and saved["pose"].dtype == np.float32
    npz.save_fsanet_npz(faces, tmp_path / "again.npz", size=24)
    again = npz.load_fsanet_npz(str(tmp_path / "again.npz"))
    np.testing.assert_array_equal(again.poses, faces.poses)
    assert again.names == ["again:0", "again:1", "again:2"]
    assert np.abs(np.stack(again.images).astype(int) - images).mean() < 25  # re-cropped from the crop


def test_fsanet_npz_errors(tmp_path):
    image = np.zeros((2, 8, 8, 3), np.uint8)
    pose = np.zeros((2, 3))
    path = tmp_path / "x.npz"
    cases = [
        ({"image": image}, f"{path} lacks the key(s) ['pose']; expected 'image' and 'pose'"),
        ({"pose": pose}, f"{path} lacks the key(s) ['image']; expected 'image' and 'pose'"),
        ({"image": image.astype(np.float32), "pose": pose}, "'image' must be uint8 (n, H, W, 3). Received: float32"),
        ({"image": image[..., 0], "pose": pose}, "'image' must be uint8 (n, H, W, 3). Received: uint8 (2, 8, 8)"),
        ({"image": image[..., :2], "pose": pose}, "Received: uint8 (2, 8, 8, 2)"),
        ({"image": image, "pose": pose[:, :2]}, "'pose' must be (n, 3) with n = 2. Received: (2, 2)"),
        ({"image": image, "pose": pose[0]}, "'pose' must be (n, 3) with n = 2. Received: (3,)"),
        ({"image": image, "pose": pose[:1]}, "'pose' must be (n, 3) with n = 2. Received: (1, 3)"),
        ({"image": image, "pose": [[0, 0, 0], [0, np.inf, 0]]}, "NaN or inf in 1 row(s), the first at index 1"),
        ({"image": image, "pose": np.array([["a", "b", "c"]] * 2)}, "'pose' must hold numbers (degrees). Received"),
    ]
    for arrays, message in cases:
        np.savez(path, **arrays)
        with pytest.raises(DataError) as info:
            npz.load_fsanet_npz(path)
        assert message in str(info.value), (str(info.value), message)
    np.savez(path, image=np.zeros((3, 8, 8, 3), np.uint8), pose=[[0, 0, 0], [np.nan, 0, 0], [0, 0, np.nan]])
    with pytest.raises(DataError, match=r"in 2 row\(s\), the first at index 1$"):
        npz.load_fsanet_npz(path)
    np.savez(path, image=image, pose=np.array([[1, 2, 3], [4, 5, 6]], dtype=object))  # needs pickle to load
    with pytest.raises(DataError, match=r"^Cannot read npz .*x\.npz: Object arrays cannot be loaded"):
        npz.load_fsanet_npz(path)
    path.write_bytes(b"PK not a zip")
    with pytest.raises(DataError, match=r"^Cannot read npz .*x\.npz: "):
        npz.load_fsanet_npz(path)
    with pytest.raises(DataError) as info:
        npz.load_fsanet_npz(tmp_path)
    assert str(info.value) == f"Not a file: {tmp_path}"


# ---------------------------------------------------------------- Pointing'04
def test_pointing04_names_boxes_and_folder(tmp_path):
    assert pointing04.parse_name("person05215+60-75") == (-75.0, 60.0)  # (yaw = pan, pitch = tilt)
    for stem in ("person5215+60-75", "person05215+60", "person05215+60-75x", "xperson05215+60-75", "person0521+6-7"):
        with pytest.raises(DataError) as info:
            pointing04.parse_name(stem)
        assert str(info.value) == f"Not a Pointing'04 file name (personNNSI<tilt><pan>): {stem}"
    text = tmp_path / "b.txt"
    text.write_text("person05215+60-75.jpg\nFace 7\n100.5\n80\n40\n30\n")
    assert pointing04.read_box(text).tolist() == [80.5, 65.0, 120.5, 95.0]
    assert pointing04.read_box(text).dtype == np.float32
    text.write_text("1\n2\n3\n")
    with pytest.raises(DataError) as info:
        pointing04.read_box(text)
    assert str(info.value) == f"{text}: expected the face box as 4 numbers (centre x, centre y, width, height)"
    for w, h in [(30, -1), (0, 30), (30, 0)]:
        text.write_text(f"1\n2\n{w}\n{h}\n")
        with pytest.raises(DataError) as info:
            pointing04.read_box(text)
        assert str(info.value) == f"{text}: the face box has no area (width {float(w)}, height {float(h)})"
    text.write_text("1\n2\n0.5\n0.25\n")  # small but not empty
    assert pointing04.read_box(text).tolist() == [0.75, 1.875, 1.25, 2.125]
    text.write_bytes(b"person\xff\xfe.jpg\nFace\n100\n80\n40\n30\n")  # a header that is not UTF-8
    assert pointing04.read_box(text).tolist() == [80.0, 65.0, 120.0, 95.0]
    # A folder: Person01 with two labelled faces and a box without its image.
    person = tmp_path / "set" / "Person01"
    labels = {"person01146+30-15": (-15.0, 30.0), "person01100-90+0": (0.0, -90.0)}
    for seed, stem in enumerate(labels):
        write_image(person / f"{stem}.jpg", seed=seed)
        (person / f"{stem}.txt").write_text(f"{stem}.jpg\n\nFace\n80\n60\n40\n30\n")
    (person / "person01100+0+0.txt").write_text("Face\n80\n60\n40\n30\n")  # sorted first, no image: skipped
    assert pointing04.is_pointing04_folder(tmp_path / "set")
    assert not pointing04.is_pointing04_folder(person)
    faces = pointing04.load_pointing04_folder(tmp_path / "set")
    assert faces.names == ["Person01/person01100-90+0", "Person01/person01146+30-15"]
    np.testing.assert_array_equal(faces.poses[:, :2], [labels[n.split("/")[1]] for n in faces.names])
    assert np.isnan(faces.poses[:, 2]).all()
    np.testing.assert_allclose(faces.boxes[0][2:] - faces.boxes[0][:2], [40, 30])
    frame = cv2.imread(str(person / "person01100-90+0.jpg"))
    crop, box = loose_crop(frame, np.array([60, 45, 100, 75], np.float32))
    np.testing.assert_array_equal(faces.images[0], crop)
    np.testing.assert_array_equal(faces.boxes[0], box)
    with pytest.raises(DataError) as info:
        pointing04.load_pointing04_folder(person)
    assert str(info.value) == f"No Pointing'04 image with its .txt box in {person}"


# ---------------------------------------------------------------- AFLW_extra
HEADER = "name,gt_yaw,has_dhp,same_face,yaw,pitch,roll,lbox_x0,lbox_y0,lbox_x1,lbox_y1\n"


def write_extra(folder, rows: str) -> None:
    (folder / "crops").mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_text(HEADER + rows)


def test_aflw_extra_labels_by_source(tmp_path, caplog):
    write_extra(
        tmp_path,
        "image00001.jpg,12.5,0,1,10.25,-20.5,30.75,30,32,90,95\n"
        "image00002.jpg,-40,1,0,1,2,3,20,25,100,110\n"  # same_face 0: AFLW's full pose is not this face's
        "image00003.jpg,,0,,,,,35,35,41,40\n"  # box side 6 px: a landmark error, left out
        "image00004.jpg,7,0, 1 ,-5,6,-7,0,0,120,118\n",
    )
    table = aflw_extra.read_labels(tmp_path)
    assert table.names == ["image00001", "image00002", "image00003", "image00004"]
    np.testing.assert_array_equal(table.gt_yaw, np.array([12.5, -40, np.nan, 7], np.float32))
    np.testing.assert_array_equal(table.aflw_pose[0], [10.25, -20.5, 30.75])
    assert np.isnan(table.aflw_pose[1:3]).all() and table.aflw_pose[3].tolist() == [-5, 6, -7]
    assert table.boxes[1].tolist() == [20, 25, 100, 110]
    assert table.boxes.dtype == table.gt_yaw.dtype == table.aflw_pose.dtype == np.float32
    for i in (1, 2, 4):
        write_image(tmp_path / "crops" / f"image0000{i}.jpg", 120, 120, seed=i)
    with caplog.at_level("INFO", logger="qa_headpose.datasets.aflw_extra"):
        aflw = aflw_extra.load_aflw_extra(tmp_path, workers=1)
    assert caplog.messages == ["AFLW_extra: left out 1 faces with implausible landmark boxes"]
    assert aflw.names == ["image00001", "image00002", "image00004"]
    np.testing.assert_array_equal(aflw.poses[0], [10.25, -20.5, 30.75])
    assert np.isnan(aflw.poses[1]).all() and aflw.poses[2].tolist() == [-5, 6, -7]
    yaw = aflw_extra.load_aflw_extra(tmp_path, labels="aflw_yaw").poses
    np.testing.assert_array_equal(yaw[:, 0], [12.5, -40, 7])
    assert np.isnan(yaw[:, 1:]).all()
    assert np.isnan(aflw_extra.load_aflw_extra(tmp_path, labels="none").poses).all()
    assert aflw_extra.load_aflw_extra(tmp_path, limit=2).names == ["image00001", "image00002"]
    assert aflw_extra.label_mask(aflw.poses).tolist() == [[True] * 3, [False] * 3, [True] * 3]
    pseudo = tmp_path / "pseudo.csv"
    pseudo.write_text(
        "name,yaw,pitch,roll,mirror_yaw,mirror_pitch,mirror_roll,spread,gt_yaw\n"
        "image00004,1.5,-2.5,3.5,1,2,3,0.5,7\nimage00001,-4,5,-6,1,1,1,0.5,12.5\n"
    )
    taught = aflw_extra.load_aflw_extra(tmp_path, labels=pseudo)
    np.testing.assert_array_equal(taught.poses[[0, 2]], [[-4, 5, -6], [1.5, -2.5, 3.5]])
    assert np.isnan(taught.poses[1]).all()  # not in the pseudo-label file
    kept = aflw_extra.load_aflw_extra(tmp_path, labels=pseudo, max_mirror_deg=1.5).poses
    assert np.isnan(kept[2]).all() and kept[0].tolist() == [-4, 5, -6]  # image00004's mirror mean 2 > 1.5
    near = aflw_extra.load_aflw_extra(tmp_path, labels=pseudo, max_gt_yaw_gap_deg=10).poses
    assert np.isnan(near[0]).all() and near[2].tolist() == [1.5, -2.5, 3.5]  # |-4 - 12.5| > 10 >= |1.5 - 7|
    # With every box plausible, nothing is said.
    caplog.clear()
    (tmp_path / "labels.csv").write_text(HEADER + "image00001.jpg,12.5,0,1,10.25,-20.5,30.75,30,32,90,95\n")
    with caplog.at_level("INFO", logger="qa_headpose.datasets.aflw_extra"):
        assert len(aflw_extra.load_aflw_extra(tmp_path)) == 1
    assert caplog.messages == []


def test_aflw_extra_label_file_errors(tmp_path):
    write_extra(tmp_path, "")
    (tmp_path / "labels.csv").write_text("name,gt_yaw,same_face\nimage1.jpg,3,1\n")
    with pytest.raises(DataError) as info:
        aflw_extra.read_labels(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'labels.csv'} lacks the column(s) "
        "['lbox_x0', 'lbox_x1', 'lbox_y0', 'lbox_y1', 'pitch', 'roll', 'yaw']"
    )
    write_extra(tmp_path, "image1.jpg,three,0,1,1,2,3,0,0,50,50\n")
    with pytest.raises(DataError, match=r"^Cannot read .*labels\.csv: could not convert string to float"):
        aflw_extra.read_labels(tmp_path)
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(DataError, match=r"^Cannot read .*labels\.csv: "):
        aflw_extra.read_labels(tmp_path)
    assert not aflw_extra.is_aflw_extra_folder(tmp_path)
    with pytest.raises(DataError) as info:
        aflw_extra.load_aflw_extra(tmp_path)
    assert str(info.value) == f"Not an AFLW_extra folder (needs labels.csv and crops/): {tmp_path}"


def test_aflw_extra_box_sizes_and_padding():
    boxes = np.array(
        [
            [0, 0, 12, 5],  # side 12: the smallest kept
            [0, 0, 11.9, 11.9],
            [0, 0, 160, 100],  # side 160: the largest kept
            [0, 0, 20, 160.1],
            [10, 0, 10, 20],  # no width
            [0, 10, 20, 10],
            [0, 0, np.nan, 20],
            [0, 0, 0.5, 20],  # thin but not empty: kept
            [0, 0, 20, 0.5],
        ],
        np.float32,
    )
    assert aflw_extra.usable_boxes(boxes).tolist() == [True, False, True, False, False, False, False, True, True]
    image = np.full((120, 100, 3), 200, np.uint8)
    box = np.array([20, 30, 80, 90], np.float32)  # 60 x 60: FSA box 132 x 132, grown 1.3x: 171.6
    padded, moved = aflw_extra.pad_face(image, box)
    # Centre (50, 60), half side 85.8: 36 px left, 26 above, 36 right, 26 below (ceil).
    assert padded.shape == (120 + 26 + 26, 100 + 36 + 36, 3)
    assert moved.tolist() == [56, 56, 116, 116] and moved.dtype == np.float32
    np.testing.assert_array_equal(padded[26:146, 36:136], image)
    assert padded[:26].max() == 0 and padded[:, :36].max() == 0 and padded[146:].max() == 0
    same, unmoved = aflw_extra.pad_face(np.zeros((400, 400, 3), np.uint8), box + 150)
    assert same.shape == (400, 400, 3) and unmoved.tolist() == (box + 150).tolist()


def test_pseudo_label_filters_at_their_bounds(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(
        "name,yaw,pitch,roll,mirror_yaw,mirror_pitch,mirror_roll,spread,gt_yaw\n"
        "a,10,-1.5,2,2,4,6,0.1,30\n"  # mirror mean 4, |yaw - gt_yaw| 20
        "b,-10,1,-2,1,1,1,0.1,-35\n"  # mirror mean 1, |yaw - gt_yaw| 25
        "c,5,5,5,9,9,9,0.1,\n"  # no gt_yaw: the yaw filter cannot judge it
    )
    assert aflw_extra.read_pseudo_labels(path) == {"a": (10, -1.5, 2), "b": (-10, 1, -2), "c": (5, 5, 5)}
    assert sorted(aflw_extra.read_pseudo_labels(path, max_mirror_deg=4)) == ["a", "b"]
    assert sorted(aflw_extra.read_pseudo_labels(path, max_mirror_deg=3.9)) == ["b"]
    assert sorted(aflw_extra.read_pseudo_labels(path, max_gt_yaw_gap_deg=20)) == ["a", "c"]
    assert sorted(aflw_extra.read_pseudo_labels(path, max_gt_yaw_gap_deg=25)) == ["a", "b", "c"]
    path.write_text("name,yaw,pitch,roll,mirror_yaw,mirror_pitch,mirror_roll,spread,gt_yaw\na,x,1,2,1,1,1,0,3\n")
    with pytest.raises(DataError, match=r"^Cannot read pseudo-labels .*p\.csv: could not convert"):
        aflw_extra.read_pseudo_labels(path)
    with pytest.raises(DataError) as info:
        aflw_extra.read_pseudo_labels(tmp_path / "none.csv")
    assert str(info.value) == (
        f"No pseudo-label file {tmp_path / 'none.csv'}; make it with: qa-headpose data pseudo-label"
    )
    path.write_text("name,yaw,pitch,roll\n")
    with pytest.raises(DataError) as info:
        aflw_extra.read_pseudo_labels(path)
    assert str(info.value) == f"{path} is not a pseudo-label CSV (columns {list(aflw_extra.PSEUDO_COLUMNS)})"
