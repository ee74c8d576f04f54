"""AFLW_extra: the reader on real files, the teacher's pseudo-labels, the extra faces in training data."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, require

from qa_headpose.core.errors import DataError
from qa_headpose.datasets import aflw_extra
from qa_headpose.datasets.load import load_faces
from qa_headpose.datasets.pseudo_label import pseudo_label_folder, teacher_predict
from qa_headpose.inference.preprocess import crop_face, enlarge_box
from qa_headpose.training import workflow
from qa_headpose.training.config import ExtraDataConfig

EXTRA_DIR = SHARED_DATA / "AFLW_extra"
TEACHER = REPO / "weights" / "teacher_v1"


@pytest.fixture(scope="module")
def extra_dir():
    return require(EXTRA_DIR)


@pytest.fixture(scope="module")
def mini_extra(tmp_path_factory, extra_dir):
    """An AFLW_extra folder of 12 real faces (the first rows of labels.csv, crops linked, not copied)."""
    out = tmp_path_factory.mktemp("aflw_extra_mini")
    (out / "crops").mkdir()
    lines = (extra_dir / "labels.csv").read_text().splitlines()
    rows = [lines[0]]
    for line in lines[1:]:
        name = line.split(",", 1)[0]
        same_face = line.split(",")[3]
        # Six faces with AFLW's full angles, six without.
        if sum(r.split(",")[3] == same_face for r in rows[1:]) < 6:
            rows.append(line)
            (out / "crops" / name).symlink_to(extra_dir / "crops" / name)
        if len(rows) == 13:
            break
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return out


def test_read_labels_of_the_real_folder(extra_dir):
    table = aflw_extra.read_labels(extra_dir)
    assert len(table.names) == 18606 == len(set(table.names))
    assert np.isfinite(table.gt_yaw).all()
    full = np.isfinite(table.aflw_pose).all(1)
    # The README: AFLW's full angles for 8,206 faces (same_face == 1); never a made-up 0 elsewhere.
    assert full.sum() == 8206
    assert np.isnan(table.aflw_pose[~full]).all()
    assert np.allclose(table.aflw_pose[full, 0], table.gt_yaw[full], atol=1e-3)
    assert aflw_extra.usable_boxes(table.boxes).sum() > 18500


def test_padded_faces_hold_the_whole_fsa_box_with_black_outside_the_jpg(mini_extra):
    faces = aflw_extra.load_aflw_extra(mini_extra, labels="aflw")
    table = aflw_extra.read_labels(mini_extra)
    assert len(faces) == 12 and faces.names == table.names
    for image, box, original_box, name in zip(faces.images, faces.boxes, table.boxes, faces.names):
        x0, y0, x1, y1 = enlarge_box(box)
        assert x0 >= 0 and y0 >= 0 and x1 <= image.shape[1] and y1 <= image.shape[0]
        left, top = (box - original_box)[:2].round().astype(int)
        jpg = image[top : top + 120, left : left + 120]
        import cv2

        assert np.array_equal(jpg, cv2.imread(str(mini_extra / "crops" / f"{name}.jpg")))
        outside = image.copy()
        outside[top : top + 120, left : left + 120] = 0
        assert outside.max() == 0 and (left > 0 or top > 0)


def test_label_sources_mark_missing_angles_as_nan(mini_extra):
    aflw = load_faces(mini_extra, labels="aflw").poses
    mask = aflw_extra.label_mask(aflw)
    assert mask.all(1).sum() == 6 and (~mask).all(1).sum() == 6
    yaw_only = aflw_extra.load_aflw_extra(mini_extra, labels="aflw_yaw").poses
    assert aflw_extra.label_mask(yaw_only).tolist() == [[True, False, False]] * 12
    assert np.isnan(aflw_extra.load_aflw_extra(mini_extra, labels="none").poses).all()


def test_not_an_extra_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="Not an AFLW_extra folder"):
        aflw_extra.load_aflw_extra(tmp_path)
    (tmp_path / "crops").mkdir()
    (tmp_path / "labels.csv").write_text("name,gt_yaw\nimage1.jpg,3\n")
    with pytest.raises(DataError, match="lacks the column"):
        aflw_extra.load_aflw_extra(tmp_path)


@pytest.fixture(scope="module")
def teacher_models():
    paths = [TEACHER / "headpose_float32.tflite", TEACHER / "headpose_int8.tflite"]
    for p in paths:
        if not p.is_file():
            pytest.fail(f"the committed teacher is missing: {p}")
    return paths


def test_teacher_averages_crop_and_mirror_symmetrically(mini_extra, teacher_models):
    from qa_headpose.inference.runtime import TFLiteRunner

    faces = aflw_extra.load_aflw_extra(mini_extra, labels="none")
    runners = [TFLiteRunner(p) for p in teacher_models]
    x = np.stack([crop_face(im, b, 128) for im, b in zip(faces.images, faces.boxes)]).astype(np.float32)
    direct = teacher_predict(runners, x)
    mirrored = teacher_predict(runners, np.ascontiguousarray(x[:, :, ::-1]))
    # The mirrored face's label is the flipped label, and the confidences are the same.
    np.testing.assert_allclose(mirrored["pose"], direct["pose"] * [-1, 1, -1], atol=1e-4)
    np.testing.assert_allclose(mirrored["mirror"], direct["mirror"], atol=1e-4)
    assert (direct["spread"] > 0).all() and (direct["mirror"] >= 0).all()
    assert np.abs(direct["pose"]).max() < 100


def test_teacher_of_several_input_sizes_averages_each_on_its_own_crop(mini_extra, teacher_models, tmp_path):
    from qa_headpose.inference.runtime import TFLiteRunner

    fast = REPO / "weights" / "round2" / "headpose_fast_int8.tflite"  # 64x64, a member of the round-3 teacher
    big, small = TFLiteRunner(teacher_models[1]), TFLiteRunner(fast)
    assert (big.input_size, small.input_size) == (128, 64)
    faces = aflw_extra.load_aflw_extra(mini_extra, labels="none")
    x = {
        s: np.stack([crop_face(im, b, s) for im, b in zip(faces.images, faces.boxes)]).astype(np.float32)
        for s in (128, 64)
    }
    both = teacher_predict([big, small], x)
    alone = [teacher_predict([big], x[128]), teacher_predict([small], x[64])]
    np.testing.assert_allclose(both["pose"], (alone[0]["pose"] + alone[1]["pose"]) / 2, atol=1e-4)
    np.testing.assert_allclose(both["spread"], np.abs(alone[0]["pose"] - alone[1]["pose"]).mean(1) / 2, atol=1e-4)
    # The command takes such a teacher too, and writes the same labels.
    out = tmp_path / "mixed.csv"
    pseudo_label_folder(mini_extra, [teacher_models[1], fast], out)
    labels = aflw_extra.read_pseudo_labels(out)
    np.testing.assert_allclose([labels[n] for n in faces.names], both["pose"], atol=2e-3)


def test_pseudo_labels_are_written_and_a_killed_run_restarts(mini_extra, teacher_models, tmp_path):
    out = tmp_path / "pseudo.csv"
    summary = pseudo_label_folder(mini_extra, teacher_models, out, chunk=4)
    assert summary["faces"] == 12 and not out.with_name("pseudo.csv.partial.npz").exists()
    provenance = json.loads((tmp_path / "pseudo.csv.teacher.json").read_text())
    assert [t["path"] for t in provenance["teacher"]] == [str(p) for p in teacher_models]
    assert provenance["teacher"][0]["sha256"] == hashlib.sha256(teacher_models[0].read_bytes()).hexdigest()
    assert provenance["faces"] == 12
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["name"] for r in rows] == aflw_extra.read_labels(mini_extra).names
    labels = aflw_extra.read_pseudo_labels(out)
    assert len(labels) == 12
    # A run killed after the first chunk: its partial file says 4 faces are done, with
    # sentinel poses; the restart keeps them and labels only the other 8.
    partial = tmp_path / "again.csv.partial.npz"
    names = np.array([r["name"] for r in rows])
    np.savez(
        partial,
        names=names,
        done=4,
        pose=np.full((12, 3), 77.0, np.float32),
        mirror=np.zeros((12, 3), np.float32),
        spread=np.zeros(12, np.float32),
    )
    pseudo_label_folder(mini_extra, teacher_models, tmp_path / "again.csv", chunk=4)
    again = aflw_extra.read_pseudo_labels(tmp_path / "again.csv")
    assert [again[n] for n in names[:4]] == [(77.0, 77.0, 77.0)] * 4
    assert [again[n] for n in names[4:]] == [labels[n] for n in names[4:]]
    assert not partial.exists()


def test_pseudo_label_filters_drop_unsure_faces(tmp_path):
    out = tmp_path / "p.csv"
    out.write_text(
        "name,yaw,pitch,roll,mirror_yaw,mirror_pitch,mirror_roll,spread,gt_yaw\n"
        "a,10,1,2,1,1,1,0.1,12\n"
        "b,10,1,2,20,20,20,0.1,12\n"
        "c,10,1,2,1,1,1,0.1,60\n"
    )
    assert sorted(aflw_extra.read_pseudo_labels(out)) == ["a", "b", "c"]
    assert sorted(aflw_extra.read_pseudo_labels(out, max_mirror_deg=8)) == ["a", "c"]
    assert sorted(aflw_extra.read_pseudo_labels(out, max_mirror_deg=8, max_gt_yaw_gap_deg=25)) == ["a"]
    (tmp_path / "bad.csv").write_text("name,yaw\na,1\n")
    with pytest.raises(DataError, match="not a pseudo-label CSV"):
        aflw_extra.read_pseudo_labels(tmp_path / "bad.csv")


def test_extra_faces_join_the_train_split_only(aflw_small, mini_extra):
    extra = ExtraDataConfig(path=str(mini_extra), labels="aflw", labelled_repeat=3)
    plain = workflow.prepare_data([aflw_small])
    mixed = workflow.prepare_data([aflw_small], extra=extra)
    assert mixed.val.names == plain.val.names
    # The six faces with AFLW's full angles join; the six without are dropped, never labelled 0.
    assert len(mixed.train) == 3 * len(plain.train) + 6
    assert mixed.report["extra"]["without_labels"] == 6
    assert np.isfinite(mixed.train.poses).all()


def test_train_cli_refuses_missing_pseudo_labels(tmp_path, mini_extra):
    base = [sys.executable, "-m", "qa_headpose.cli", "train", "--preset", "tiny", "--out", str(tmp_path / "run")]
    missing = tmp_path / "none.csv"
    got = subprocess.run(
        base + ["--extra", str(mini_extra), "--pseudo-labels", str(missing)], capture_output=True, text=True
    )
    assert got.returncode == 2 and "qa-headpose data pseudo-label" in got.stderr
    assert "Traceback" not in got.stderr and not (tmp_path / "run").exists()
    got = subprocess.run(base + ["--pseudo-labels", str(missing)], capture_output=True, text=True)
    assert got.returncode == 2 and "needs --extra" in got.stderr


def test_both_label_sources_give_each_face_twice(aflw_small, mini_extra, teacher_models, tmp_path):
    pseudo = tmp_path / "pseudo.csv"
    pseudo_label_folder(mini_extra, teacher_models, pseudo)
    extra = ExtraDataConfig(path=str(mini_extra), labels="both", pseudo_labels=str(pseudo))
    plain = workflow.prepare_data([aflw_small])
    mixed = workflow.prepare_data([aflw_small], extra=extra)
    # 12 faces with the teacher's labels, the 6 with AFLW's full angles once more with those.
    assert len(mixed.train) == len(plain.train) + 18
    teacher = aflw_extra.read_pseudo_labels(pseudo)
    extra_part = mixed.train.subset(np.arange(len(plain.train), len(mixed.train)))
    np.testing.assert_allclose(extra_part.poses[:12], [teacher[n] for n in extra_part.names[:12]], atol=1e-3)
    aflw = dict(zip(aflw_extra.read_labels(mini_extra).names, aflw_extra.read_labels(mini_extra).aflw_pose))
    np.testing.assert_allclose(extra_part.poses[12:], [aflw[n] for n in extra_part.names[12:]])


def test_pseudo_label_command_shows_progress_only_when_asked(mini_extra, tmp_path):
    base = [sys.executable, "-m", "qa_headpose.cli", "data", "pseudo-label", str(mini_extra), "--limit", "8"]
    shown = subprocess.run(base + ["--out", str(tmp_path / "a.csv"), "--progress"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"pseudo-label {mini_extra.name}" in shown.stderr and "8/8" in shown.stderr
    assert "wrote" in shown.stdout and len((tmp_path / "a.csv").read_text().splitlines()) == 9
    quiet = subprocess.run(base + ["--out", str(tmp_path / "b.csv"), "--quiet"], capture_output=True, text=True)
    assert quiet.returncode == 0 and "pseudo-label" not in quiet.stderr
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()


def _label_sets():
    from qa_headpose.training import presets

    return sorted(presets.TEACHER_OF_LABELS)


@pytest.mark.parametrize("labels_csv", _label_sets())
def test_each_label_set_names_the_command_and_its_committed_teacher(labels_csv):
    """Every teacher that labelled a committed model's extra faces is committed, and its command says so."""
    from qa_headpose.training import presets

    extra = presets.ExtraDataConfig(path=presets.EXTRA_DATA, labels="pseudo", pseudo_labels=labels_csv)
    command = presets.pseudo_label_command(extra).split()
    assert command[:3] == ["qa-headpose", "data", "pseudo-label"]
    assert command[command.index("--out") + 1] == labels_csv
    teacher = command[command.index("--teacher") + 1 :]
    assert teacher == list(presets.TEACHER_OF_LABELS[labels_csv])
    assert all((REPO / t).is_file() and (REPO / t).with_suffix(".json").is_file() for t in teacher), teacher


def test_the_default_teacher_made_the_labels_of_the_shipped_fast_models_first_stage():
    import json

    from qa_headpose.training import presets

    stage1 = json.loads((REPO / "weights" / "round5" / "fast_train_config.json").read_text())
    assert stage1["data"]["extra"]["config"]["pseudo_labels"] == presets.PSEUDO_LABELS
    assert presets.TEACHER_OF_LABELS[presets.PSEUDO_LABELS] == presets.TEACHER_MODELS
