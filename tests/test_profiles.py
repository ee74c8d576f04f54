"""Large-yaw faces synthesized from the labelled faces (qa_headpose/training/profiles.py): real AFLW2000-3D faces,
the real warp, the shipped model as the judge of what the warp shows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io

from qa_headpose.cli.main import main as cli_main
from qa_headpose.core import angles
from qa_headpose.datasets.mat import read_mat_label
from qa_headpose.inference.images import read_image
from qa_headpose.training.profiles import ProfileConfig, target_yaw, turn_face

# Train faces (not in the committed val list) at moderate poses, both sides: (stem, yaw of its label).
FACES = {"image00026": 25.3, "image00078": 40.8, "image00090": 12.4, "image00046": -16.2, "image00060": -6.4}
VAL_FACE = "image00047"  # in qa_headpose/splits/aflw2000_val.txt, yaw -9


def _face(aflw_dir, stem):
    mat = scipy.io.loadmat(str(aflw_dir / f"{stem}.mat"))
    pose = angles.pose_para_to_ypr(mat["Pose_Para"])
    assert pose[0] == pytest.approx(FACES.get(stem, pose[0]), abs=0.1)
    return read_image(aflw_dir / f"{stem}.jpg"), mat, pose


def _head_shape(pt3d_68, pose):
    """The landmarks in the head's own frame (what a turn must not change)."""
    cam = np.stack([pt3d_68[0], -pt3d_68[1], pt3d_68[2]], axis=1).astype(np.float64)
    return (cam - cam.mean(axis=0)) @ angles.ypr_to_matrix(pose).T


def test_a_turn_to_the_same_yaw_leaves_the_photo_and_landmarks_as_they_were(aflw_dir):
    image, mat, pose = _face(aflw_dir, "image00026")
    face = turn_face(image, mat["pt3d_68"], mat["pt2d"], pose, float(pose[0]))
    assert np.abs(face.image.astype(int) - image).max() <= 1
    visible = np.all(mat["pt2d"] >= 0, axis=0)
    np.testing.assert_allclose(face.pt2d[:, visible], mat["pt2d"][:, visible], atol=1e-3)
    np.testing.assert_allclose(face.pose_ypr, pose, atol=1e-4)


@pytest.mark.parametrize("stem", sorted(FACES))
def test_the_new_label_is_the_pose_of_the_turned_3d_landmarks(aflw_dir, stem):
    image, mat, pose = _face(aflw_dir, stem)
    new_yaw = float(pose[0] + np.sign(pose[0]) * 30)
    face = turn_face(image, mat["pt3d_68"], mat["pt2d"], pose, new_yaw)
    assert face.pose_ypr[0] == pytest.approx(new_yaw) and face.pose_ypr[1:] == pytest.approx(pose[1:])
    before = _head_shape(mat["pt3d_68"], pose)
    after = _head_shape(face.pt3d_68, face.pose_ypr)
    # Float32 labels: the turned landmarks agree with the new pose to well under a pixel.
    assert np.abs(after - before).max() < 0.05
    moved = np.abs(face.pt3d_68[:2] - mat["pt3d_68"][:2]).max()
    assert moved > 10, f"a 30-degree turn must move the landmarks; max move {moved:.1f} px"
    # The nose tip swings towards the turn: yaw > 0 turns the face towards the image left.
    nose_from_eyes = lambda p: p[0, 30] - (p[0, 36] + p[0, 45]) / 2  # noqa: E731
    assert np.sign(nose_from_eyes(face.pt3d_68) - nose_from_eyes(mat["pt3d_68"])) == -np.sign(pose[0])
    # The image changed where the face is, and the landmarks moved with it (the far ones may leave the view).
    assert np.abs(face.image.astype(int) - image).mean() > 2
    assert np.sum(np.all(face.pt2d >= 0, axis=0)) >= 8


def test_the_shipped_model_reads_the_turned_faces_turned_further(aflw_dir, pose_model):
    from qa_headpose.datasets.faceset import loose_crop
    from qa_headpose.inference import preprocess
    from qa_headpose.inference.runtime import TFLiteRunner

    runner = TFLiteRunner(pose_model, num_threads=1)

    def read_yaw(image, pt2d):
        crop, box = loose_crop(image, preprocess.landmark_box(pt2d))
        x0, y0, x1, y1 = preprocess.clipped_pixel_box(box, preprocess.CROP_MARGIN, crop.shape)
        return float(runner(preprocess.to_model_input(crop[y0:y1, x0:x1], runner.input_size))[0, 0])

    gains = []
    for stem in sorted(FACES):
        image, mat, pose = _face(aflw_dir, stem)
        face = turn_face(image, mat["pt3d_68"], mat["pt2d"], pose, float(pose[0] + np.sign(pose[0]) * 30))
        before, after = read_yaw(image, mat["pt2d"]), read_yaw(face.image, face.pt2d)
        gains.append(np.sign(pose[0]) * (after - before))
    # A label 30 degrees further: the model reads each face further by 23-32 degrees (measured).
    assert min(gains) > 15 and np.mean(gains) > 20, gains


@pytest.mark.parametrize("yaw", [-80.0, -40.0, -5.0, 0.0, 5.0, 30.0, 70.0, 85.0])
def test_target_yaw_turns_away_from_the_camera_within_the_limits(yaw):
    config = ProfileConfig()
    rng = np.random.default_rng(0)
    draws = [target_yaw(yaw, config, rng) for _ in range(50)]
    if abs(yaw) + config.min_turn_deg > config.max_yaw_deg or abs(yaw) + config.max_turn_deg < config.min_yaw_deg:
        assert draws == [None] * 50
        return
    draws = np.array(draws)
    assert np.all((np.abs(draws) >= config.min_yaw_deg) & (np.abs(draws) <= config.max_yaw_deg))
    turn = np.abs(draws) - abs(yaw)
    assert np.all((turn >= config.min_turn_deg) & (turn <= config.max_turn_deg))
    if yaw != 0:
        assert np.all(np.sign(draws) == np.sign(yaw))
    else:
        assert set(np.sign(draws)) == {-1.0, 1.0}


def test_profile_config_refuses_ranges_that_cannot_hold():
    with pytest.raises(ValueError, match="min_yaw_deg < max_yaw_deg"):
        ProfileConfig(min_yaw_deg=90, max_yaw_deg=50)
    with pytest.raises(ValueError, match="min_turn_deg <= max_turn_deg"):
        ProfileConfig(min_turn_deg=30, max_turn_deg=10)
    with pytest.raises(ValueError, match="per_face"):
        ProfileConfig(per_face=0)


def test_profiles_command_writes_turned_train_faces_only(tmp_path, aflw_dir, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for stem in [*FACES, VAL_FACE]:
        for suffix in (".jpg", ".mat"):
            (src / f"{stem}{suffix}").symlink_to(aflw_dir / f"{stem}{suffix}")
    out = tmp_path / "turned"
    assert cli_main(["data", "profiles", str(src), "--out", str(out), "--per-face", "2"]) == 0
    assert f"wrote 10 turned faces to {out}" in capsys.readouterr().out
    written = sorted(p.stem for p in out.glob("*.jpg"))
    assert len(written) == 10 and {w.split("_yaw")[0] for w in written} == set(FACES)
    assert not any(p.name.startswith(".") for p in out.iterdir()), "a temporary file was left behind"
    for stem in written:
        pose, _ = read_mat_label(out / f"{stem}.mat")
        assert pose[0] == pytest.approx(float(stem.split("_yaw")[1]), abs=0.05)
        assert 50 <= abs(pose[0]) <= 95 and np.sign(pose[0]) == np.sign(FACES[stem.split("_yaw")[0]])
    record = json.loads((out / "profiles.json").read_text())
    assert record["left_out_split"] == "aflw2000_val" and record["config"]["per_face"] == 2

    from qa_headpose.datasets.load import load_faces

    assert len(load_faces(out)) == 10

    assert cli_main(["data", "profiles", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and is not empty; pass --force" in err[0]
    assert cli_main(["data", "profiles", str(src), "--out", str(tmp_path / "b"), "--split", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--split: No split file" in err[0]
