"""Crash safety: SIGKILL mid-epoch then --resume, checkpoints killed mid-save, atomic artifacts."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY

RUN_TIMEOUT_S = 400


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _leftovers(folder: Path) -> list[Path]:
    """Files a killed write would leave: our temp names and TF's ``*_temp`` checkpoint folders."""
    from qa_headpose.training.train import _TEMP_NAME

    return [p for p in folder.rglob("*") if _TEMP_NAME.fullmatch(p.name) or (p.is_dir() and p.name.endswith("_temp"))]


def _wait_until(condition, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Polls ``condition()`` until it holds; fails if ``proc`` exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"the process ended (code {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.002)


def _epochs_logged(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_truncate_log_keeps_header_and_earlier_epochs(tmp_path):
    from qa_headpose.training.train import truncate_log

    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n0,3.0\n1,2.0\n2,1.5\n")
    truncate_log(log, 2)
    assert log.read_text() == "epoch,loss\n0,3.0\n1,2.0\n"
    truncate_log(tmp_path / "missing.csv", 1)  # no file: nothing to do


def test_remove_stale_temps_spares_real_artifacts(tmp_path):
    from qa_headpose.training.train import remove_stale_temps

    (tmp_path / "ckpt" / "ckpt-3_temp").mkdir(parents=True)
    stale = [
        tmp_path / ".tmp123.best.weights.h5",
        tmp_path / "ckpt" / ".best_val.txt.tmp77",
        tmp_path / "ckpt" / "checkpoint.tmp9af0",
        tmp_path / ".best.tmp123-140234.weights.h5",
        tmp_path / "ckpt" / ".best_val.tmp77-5.txt",
    ]
    kept = [
        tmp_path / "best.weights.h5",
        tmp_path / "log.csv",
        tmp_path / "ckpt" / "checkpoint",
        tmp_path / "ckpt" / "ckpt-2.index",
    ]
    for path in stale + kept:
        path.write_bytes(b"x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted(stale + [tmp_path / "ckpt" / "ckpt-3_temp"])
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


_SAVE_LOOP = """
import sys
import tensorflow as tf
big = tf.Variable(tf.zeros([4_000_000]))  # 16 MB: a save takes long enough to be killed inside
step = tf.Variable(0, dtype=tf.int64)
manager = tf.train.CheckpointManager(tf.train.Checkpoint(big=big, step=step), sys.argv[1], max_to_keep=2)
for i in range(1, 100000):
    big.assign(tf.fill([4_000_000], float(i)))
    step.assign(i)
    manager.save(checkpoint_number=i)
    print(i, flush=True)
"""


def test_checkpoint_killed_mid_save_restores_the_previous_one(tmp_path):
    """SIGKILL while CheckpointManager saves in a loop: the latest indexed checkpoint always restores whole.

    Killed the moment TF's ``ckpt-N_temp`` folder of a save in progress appears, after 1, 2 and 3 whole saves.
    """
    import tensorflow as tf

    folder = tmp_path / "ckpt"
    for saves in (1, 2, 3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVE_LOOP, str(folder)], env=_env(), stdout=subprocess.PIPE, text=True
        )
        try:
            done = [proc.stdout.readline() for _ in range(saves)]  # whole saves: the next one is being written
            assert done[-1].strip(), "the save loop did not start"
            _wait_until(lambda: any(folder.glob("*_temp")), proc, 60, "checkpoint save in progress")
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        big, step = tf.Variable(tf.zeros([4_000_000])), tf.Variable(0, dtype=tf.int64)
        latest = tf.train.latest_checkpoint(str(folder))
        tf.train.Checkpoint(big=big, step=step).restore(latest).assert_consumed()
        assert int(step.numpy()) >= 1 and latest.endswith(f"ckpt-{int(step.numpy())}")
        np.testing.assert_array_equal(big.numpy()[[0, -1]], [float(step.numpy())] * 2)  # one consistent save


def test_sigkill_mid_epoch_then_resume(tmp_path, synthetic_faces):
    """A training run killed with SIGKILL mid-epoch resumes to the full epoch count, exports and evaluates."""
    from qa_headpose import evaluation
    from qa_headpose.datasets.npz import load_fsanet_npz, save_fsanet_npz
    from qa_headpose.training import workflow

    train, val, run = tmp_path / "train.npz", tmp_path / "val.npz", tmp_path / "run"
    save_fsanet_npz(synthetic_faces.subset(np.arange(144) % 24), train, 48)
    save_fsanet_npz(synthetic_faces.subset(range(24, 32)), val, 48)
    epochs, qat_epochs = 3, 1
    cmd = [
        sys.executable, "-m", "qa_headpose.cli", "train",
        "--data", str(train), "--val-data", str(val), "--out", str(run),
        "--input-size", str(TINY), "--alpha", "0.35", "--dropout", "0", "--batch-size", "8",
        "--epochs", str(epochs), "--qat-epochs", str(qat_epochs), "--seed", "3", "--quiet",
    ]  # fmt: skip
    index = run / "float" / "ckpt" / "checkpoint"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            # Killed once the first epoch is logged and checkpointed, while the next one runs.
            logged = run / "float" / "log.csv"
            first_epoch = lambda: index.exists() and logged.is_file() and logged.read_text().count("\n") >= 2  # noqa: E731
            _wait_until(first_epoch, proc, RUN_TIMEOUT_S, "first float epoch")
            still_running = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert still_running and proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    killed_at = _epochs_logged(run / "float" / "log.csv")
    assert 1 <= len(killed_at) < epochs, f"not killed mid-run: epochs logged {killed_at}"

    second = subprocess.run(
        cmd + ["--resume"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert _epochs_logged(run / "float" / "log.csv") == list(range(epochs))  # no duplicate, no gap
    assert _epochs_logged(run / "qat" / "log.csv") == list(range(qat_epochs))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["float"]["epochs_run"] < epochs, "the second run must continue, not start over"
    assert (run / "float" / "best.weights.h5").is_file() and (run / "qat" / "best.weights.h5").is_file()
    assert _leftovers(run) == []

    written = workflow.export_run(run, tmp_path / "export", None, variants=("float32",))
    tflite = tmp_path / "export" / "headpose_float32.tflite"
    assert written["float32"]["file_size_bytes"] == tflite.stat().st_size > 0
    assert _leftovers(tmp_path / "export") == []
    faces = load_fsanet_npz(val)
    metrics, pred = evaluation.evaluate_model(tflite, faces)
    assert pred.shape == (len(faces), 3) and np.isfinite(metrics["mean"])
    assert np.isfinite(summary["qat"]["val"]["mean"])  # the resumed run reloaded its QAT weights to evaluate them


@pytest.mark.parametrize("name", [".tmp42.best.weights.h5", ".headpose.tflite.tmp42"])
def test_temp_names_are_not_artifact_names(name):
    """What atomic writers leave behind never carries the name a loader opens."""
    from qa_headpose.training.train import _TEMP_NAME

    assert _TEMP_NAME.fullmatch(name)
    assert not any(
        _TEMP_NAME.fullmatch(n) for n in ("best.weights.h5", "headpose_int8.tflite", "config.json", "checkpoint")
    )
