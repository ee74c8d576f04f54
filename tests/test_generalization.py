"""Judging models beyond the val split: the Pointing'04 reader, errors by |yaw| band, reach, the landmark teacher."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, require

from qa_headpose.core.errors import DataError
from qa_headpose.datasets import pointing04
from qa_headpose.datasets.faceset import FaceSet, filter_protocol
from qa_headpose.datasets.landmarks import FEATURES, POINTS, landmark_features
from qa_headpose.datasets.load import load_faces, load_filtered
from qa_headpose.evaluation import bands

POINTING04_DIR = SHARED_DATA / "Pointing04_dev"
FAST = REPO / "qa_headpose" / "models" / "headpose_fast_int8.tflite"


@pytest.fixture(scope="module")
def pointing04_dir():
    return require(POINTING04_DIR)


@pytest.fixture(scope="module")
def mini_pointing04(tmp_path_factory, pointing04_dir):
    """Person01's photos at pan 0, +-45 and +-90, tilt 0 (links into tmp), in the folder's own layout."""
    out = tmp_path_factory.mktemp("p04") / "Person01"
    out.mkdir()
    for text in sorted((pointing04_dir / "Person01").glob("person01*+0[+-]*.txt")):
        if text.stem.endswith(("+0", "+45", "-45", "+90", "-90")):
            for suffix in (".txt", ".jpg"):
                (out / f"{text.stem}{suffix}").symlink_to(text.with_suffix(suffix))
    return out.parent


def test_names_give_yaw_from_pan_and_pitch_from_tilt():
    assert pointing04.parse_name("person01123-30+45") == (45.0, -30.0)
    assert pointing04.parse_name("person12200+15-90") == (-90.0, 15.0)
    with pytest.raises(DataError, match="Not a Pointing'04 file name"):
        pointing04.parse_name("image00002")


def test_box_is_centre_and_size(tmp_path):
    text = tmp_path / "person01100+0+0.txt"
    text.write_text("person01100+0+0.jpg\n\nFace\n200\n150\n80\n60\n")
    assert pointing04.read_box(text).tolist() == [160.0, 120.0, 240.0, 180.0]
    text.write_text("Face\n200\n150\n0\n60\n")
    with pytest.raises(DataError, match="no area"):
        pointing04.read_box(text)
    text.write_text("Face\n")
    with pytest.raises(DataError, match="4 numbers"):
        pointing04.read_box(text)


def test_the_real_folder(pointing04_dir):
    faces = load_faces(pointing04_dir)
    assert len(faces) == 930
    assert np.isnan(faces.poses[:, 2]).all()
    # 5 people x 2 series x 93 poses; pan 0 has the extra tilts +-90.
    pans, counts = np.unique(faces.poses[:, 0], return_counts=True)
    assert pans.tolist() == list(range(-90, 91, 15)) and counts[pans == 0] == 90 and counts[pans == 90] == 70
    i = faces.names.index("Person01/person01123-30+45")
    assert faces.poses[i, :2].tolist() == [45.0, -30.0]


def test_the_crop_is_the_annotated_box_plus_margin(pointing04_dir):
    """The model's crop of a stored face equals the 0.6-margin crop of the .txt box in the original photo."""
    import cv2

    from qa_headpose.inference.preprocess import crop_face

    faces = load_faces(pointing04_dir)
    stem = "person01123-30+45"
    i = faces.names.index(f"Person01/{stem}")
    image = cv2.imread(str(pointing04_dir / "Person01" / f"{stem}.jpg"))
    expected = crop_face(image, pointing04.read_box(pointing04_dir / "Person01" / f"{stem}.txt"), 64).astype(float)
    got = crop_face(faces.images[i], faces.boxes[i], 64).astype(float)
    other = crop_face(image, pointing04.read_box(pointing04_dir / "Person01" / "person01100-90+0.txt"), 64)
    assert np.abs(got - expected).mean() < 4 < np.abs(got - other.astype(float)).mean()


def test_unannotated_angles_pass_the_filter_only_when_asked():
    faces = FaceSet(
        [np.zeros((4, 4, 3), np.uint8)] * 3,
        [[0, 0, 2, 2]] * 3,
        [[10, 5, np.nan], [120, 0, np.nan], [np.nan] * 3],
        ["a", "b", "c"],
    )
    kept, dropped = filter_protocol(faces, 99.0, unlabelled_ok=True)
    assert kept.names == ["a"] and dropped == 2  # out of range, and nothing annotated
    kept, dropped = filter_protocol(faces, 99.0)
    assert len(kept) == 0 and dropped == 3


def test_bands_by_labelled_yaw():
    true = np.array([[0, 0, 0], [20, 5, 1], [45, 0, 0], [-70, 0, 0], [75, 0, 0], [-90, 10, 0], [95, 0, 0]], float)
    pred = true + np.array([[1, 2, 3], [-1, 0, 0], [-5, 0, 0], [10, 0, 0], [-15, 0, 0], [30, 0, 0], [-20, 0, 0]])
    rows = {r["band"]: r for r in bands.yaw_bands(pred, true)}
    assert list(rows) == ["0-30", "30-60", "60-75", "75-90", ">90"]
    assert rows["0-30"]["count"] == 2 and rows["0-30"]["yaw"] == 1.0 and rows["0-30"]["roll"] == 1.5
    assert rows["75-90"]["count"] == 2 and rows["75-90"]["yaw"] == 22.5  # 90 belongs to 75-90
    # Mean |yaw| with the label's sign: -70 read as -60 is a reach of 60; -90 read as -60 is 60.
    assert rows["60-75"]["mean_pred_abs_yaw"] == 60.0 and rows["60-75"]["mean_true_abs_yaw"] == 70.0
    assert rows["75-90"]["mean_pred_abs_yaw"] == 60.0
    assert bands.reach(pred, true) == {"labelled_abs_yaw": 95.0, "mean_pred_abs_yaw": 75.0}
    assert bands.moderate_pitch_mae(pred, true) == pytest.approx(2 / 7)


def test_unannotated_angles_are_not_scored():
    true = np.array([[10, 0, np.nan], [20, 0, np.nan]])
    pred = np.array([[12, 1, 50], [20, -3, -50]])
    m = bands.scored_mae(pred, true)
    assert (m["yaw"], m["pitch"], m["count"]) == (1.0, 2.0, 2) and np.isnan(m["roll"]) and np.isnan(m["mean"])
    assert "n/a" in bands.format_bands(bands.yaw_bands(pred, true))


def test_evaluate_reports_bands_reach_and_writes_json_and_plot(mini_pointing04, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa_headpose.cli",
            "evaluate",
            str(FAST),
            "--data",
            str(mini_pointing04),
            "--quiet",
            "--json",
            str(tmp_path / "m.json"),
            "--reach-plot",
            str(tmp_path / "reach.png"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "roll n/a" in out.stdout and "75-90" in out.stdout and "reach: faces labelled |yaw| 90" in out.stdout
    saved = json.loads((tmp_path / "m.json").read_text())
    faces, _ = load_filtered([mini_pointing04], unlabelled_ok=True)
    from qa_headpose import evaluation

    expected, pred = evaluation.evaluate_model(FAST, faces)
    assert saved["count"] == len(faces) == 10 and saved["yaw"] == pytest.approx(expected["yaw"])
    assert [b["band"] for b in saved["bands"]] == ["0-30", "30-60", "75-90"]
    # The fast model turns the right way: a face labelled +90 reads well above a frontal one.
    assert saved["reach"]["labelled_abs_yaw"] == 90 and saved["reach"]["mean_pred_abs_yaw"] > 30
    assert (tmp_path / "reach.png").read_bytes()[:4] == b"\x89PNG"


def _face_points(yaw: float, rng: np.random.Generator) -> np.ndarray:
    """21 generated points whose horizontal layout shifts with yaw; points on the hidden side vanish past 45."""
    base = np.stack([np.linspace(-1, 1, POINTS), np.sin(np.arange(POINTS))], 1) * 40 + 100
    shift = np.sin(np.radians(yaw)) * 30 * (1 - np.abs(np.linspace(-1, 1, POINTS)))
    pts = base + np.stack([shift, np.zeros(POINTS)], 1) + rng.normal(0, 0.5, (POINTS, 2))
    if abs(yaw) > 45:
        side = np.linspace(-1, 1, POINTS) * np.sign(yaw) > 0.6
        pts[side] = -1
    return pts


def test_landmark_features_ignore_position_and_size_and_mark_hidden_points():
    rng = np.random.default_rng(0)
    pts = _face_points(60, rng)
    moved = np.where(pts >= 0, pts * 2.5 + 40, -1)
    a, b = landmark_features(pts[None]), landmark_features(moved[None])
    assert a.shape == (1, FEATURES) and np.allclose(a, b, atol=1e-5)
    visible = a[0, 2 * POINTS : 3 * POINTS]
    assert visible.sum() == (pts >= 0).all(1).sum() < POINTS
    assert np.isnan(landmark_features(np.full((1, POINTS, 2), -1.0))).all()


def test_landmark_teacher_learns_yaw_and_blends_labels(tmp_path):
    pytest.importorskip("sklearn")
    from qa_headpose.training.landmark_teacher import LandmarkTeacher, LandmarkTeacherConfig, blend_pseudo_labels

    rng = np.random.default_rng(1)
    yaws = rng.uniform(-80, 80, 300)
    points = np.stack([_face_points(y, rng) for y in yaws])
    poses = np.stack([yaws, yaws / 4, -yaws / 8], 1)
    teacher = LandmarkTeacher.fit(points, poses, LandmarkTeacherConfig(n_estimators=100, weight=0.25))
    test_yaws = np.array([-70.0, -20.0, 0.0, 30.0, 65.0])
    pred = teacher.predict(np.stack([_face_points(y, rng) for y in test_yaws]))
    assert np.abs(pred[:, 0] - test_yaws).max() < 8 and np.abs(pred[:, 1] - test_yaws / 4).max() < 4

    # An AFLW_extra-like folder of three faces and an image teacher's labels for them.
    extra = tmp_path / "extra"
    extra.mkdir()
    names = ["image00001", "image00002", "image00003"]
    test_points = [_face_points(y, rng) for y in (-60.0, 10.0, 0.0)]
    test_points[2][:] = -1  # no visible point: the image label is kept
    columns = [f"lm{k}_{a}" for k in range(POINTS) for a in ("x", "y")]
    with open(extra / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", *columns])
        for name, pts in zip(names, test_points):
            w.writerow([f"{name}.jpg", *pts.ravel()])
    image_labels = tmp_path / "image.csv"
    image_labels.write_text(
        "name,yaw,pitch,roll,mirror_yaw,mirror_pitch,mirror_roll,spread,gt_yaw\n"
        + "".join(f"{n},{y:.3f},1.000,2.000,0.5,0.5,0.5,0.1,{y}\n" for n, y in zip(names, (-40.0, 20.0, 5.0)))
    )
    summary = blend_pseudo_labels(image_labels, extra, teacher, tmp_path / "blend.csv", {"val": {"mean": 1.0}})
    assert summary["faces"] == 3 and summary["blended"] == 2 and summary["weight"] == 0.25
    rows = list(csv.DictReader(open(tmp_path / "blend.csv")))
    geometric = teacher.predict(np.stack(test_points[:2]))
    for row, image_yaw, g in zip(rows, (-40.0, 20.0), geometric):
        assert float(row["yaw"]) == pytest.approx(0.75 * image_yaw + 0.25 * g[0], abs=1e-3)
        assert float(row["roll"]) == pytest.approx(0.75 * 2.0 + 0.25 * g[2], abs=1e-3)
        assert row["mirror_yaw"] == "0.5" and row["gt_yaw"] != ""
    assert float(rows[0]["yaw"]) < -40  # the landmark teacher reads -60 further out than the image teacher's -40
    assert float(rows[2]["yaw"]) == 5.0
    record = json.loads((tmp_path / "blend.csv.teacher.json").read_text())
    assert record["weight"] == 0.25 and record["landmark_teacher"]["val"] == {"mean": 1.0}


def test_landmark_labels_command_refuses_a_missing_label_file(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa_headpose.cli",
            "data",
            "landmark-labels",
            str(tmp_path),
            "--labels",
            str(tmp_path / "none.csv"),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_paired_bootstrap_separates_a_real_gain_from_noise():
    from qa_headpose.evaluation.compare import face_errors, paired_bootstrap

    rng = np.random.default_rng(3)
    a = rng.gamma(2.0, 2.0, 226)
    better = paired_bootstrap(a, a - 0.5 + rng.normal(0, 0.3, 226))
    assert better["high"] < 0 and better["low"] < better["difference"] < better["high"]
    noise = paired_bootstrap(a, a + rng.normal(0, 1.0, 226))
    assert noise["low"] < 0 < noise["high"]
    true = np.array([[10.0, 0.0, np.nan], [0.0, 0.0, 0.0]])
    assert face_errors(true + [[2, 4, 9], [3, 3, 3]], true).tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(a, a[:-1])


def test_recipes_over_seeds_average_the_runs_and_report_their_spread():
    from qa_headpose.evaluation.compare import paired_bootstrap, recipe_difference, seed_groups

    rng = np.random.default_rng(4)
    faces = rng.gamma(2.0, 2.0, 300)
    control = [faces + 0.3, faces - 0.3]  # two seeds 0.6 apart
    candidate = [faces - 0.1, faces - 0.1, faces - 0.4]
    result = recipe_difference(control, candidate)
    assert result["difference"] == pytest.approx(-0.2)
    assert result["runs_a"] == pytest.approx([faces.mean() + 0.3, faces.mean() - 0.3])
    assert result["seed_spread"] == pytest.approx(0.6)  # the larger spread: the control's, not the candidate's 0.3
    assert result["low"] == paired_bootstrap(faces, faces - 0.2)["low"]
    with pytest.raises(ValueError, match="same faces"):
        recipe_difference(control, [faces[:-1]])
    assert seed_groups([1, 2, 3, 4, 5, 6], 3) == [[1, 2, 3], [4, 5, 6]]
    for items, seeds in (([1, 2, 3], 2), ([], 1), ([1], 0)):
        with pytest.raises(ValueError, match="multiple"):
            seed_groups(items, seeds)


def test_model_card_section_for_another_capture():
    from qa_headpose.training.modelcard import pointing04_section

    true = np.array([[0, 0, np.nan], [90, 0, np.nan], [-90, 10, np.nan], [45, 0, np.nan]], float)
    pred = np.array([[2, 1, 0], [60, 0, 0], [-50, 0, 0], [40, 3, 0]], float)
    text = "\n".join(pointing04_section(bands.report(pred, true)))
    assert "Yaw MAE 19.25" in text and "pan ±90 read as 55.0" in text
    assert "| 75-90 | 2 | 35.00 | 90.0 | 55.0 |" in text and "| 0-30 | 1 | 2.00 | 0.0 | 2.0 |" in text
    assert pointing04_section(None) == []


def _compare_models(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "tools/compare_models.py", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_compare_models_scores_a_model_against_itself_with_a_zero_interval(mini_pointing04):
    require(SHARED_DATA / "AFLW2000")
    out = _compare_models(str(FAST), str(FAST), "--pointing04", str(mini_pointing04))
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith(f"| {FAST}")]
    assert len(rows) == 2 and rows[0] == rows[1]
    assert "val mean +0.000 [+0.000, +0.000], P04 yaw +0.00 [+0.00, +0.00]" in out.stdout


def test_compare_models_compares_recipes_over_their_seeds(mini_pointing04):
    require(SHARED_DATA / "AFLW2000")
    out = _compare_models("--seeds", "2", *[str(FAST)] * 4, "--pointing04", str(mini_pointing04))
    assert out.returncode == 0, out.stderr
    assert (
        f"recipe {FAST} (2 seeds) - {FAST}: val mean +0.000 [+0.000, +0.000], seed spread 0.000; "
        "P04 yaw +0.00 [+0.00, +0.00], seed spread 0.00" in out.stdout
    )
    out = _compare_models("--seeds", "2", *[str(FAST)] * 3, "--pointing04", str(mini_pointing04))
    assert out.returncode == 2 and "--seeds 2: the 3 models do not fall into groups of 2" in out.stderr
    assert "Traceback" not in out.stderr and "| model |" not in out.stdout


def test_compare_models_names_a_missing_model_in_one_line(mini_pointing04, tmp_path):
    require(SHARED_DATA / "AFLW2000")
    out = _compare_models(str(FAST), str(tmp_path / "missing.tflite"), "--pointing04", str(mini_pointing04))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith(f"Model file not found: {tmp_path / 'missing.tflite'}")
