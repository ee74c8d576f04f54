"""tf.distribute training: sharded input, MirroredStrategy, and two MultiWorkerMirroredStrategy workers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY

WORKER_TIMEOUT_S = 540
PAUSE_S = 20


def _free_ports(n: int) -> list[int]:
    """Ports the kernel hands out for port 0 (closed again, so a worker can bind them)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _write_npz(faces, tmp_path: Path) -> tuple[Path, Path]:
    from qa_headpose.datasets.npz import save_fsanet_npz

    train, val = tmp_path / "train.npz", tmp_path / "val.npz"
    save_fsanet_npz(faces.subset(np.arange(64) % 24), train, 48)
    save_fsanet_npz(faces.subset(range(24, 32)), val, 48)
    return train, val


def _labels(ds) -> list[np.ndarray]:
    return [y.numpy() for _, y in ds]


def test_shards_together_make_the_global_batches(synthetic_faces):
    from qa_headpose.training.config import AugmentConfig
    from qa_headpose.training.train import make_train_dataset

    args = (synthetic_faces, TINY, 8, AugmentConfig.none(), 5, 1, 3)
    whole = _labels(make_train_dataset(*args))
    shards = [_labels(make_train_dataset(*args, num_shards=2, shard_index=i)) for i in range(2)]
    assert len(whole) == len(shards[0]) == len(shards[1]) == 2 * (len(synthetic_faces) // 8)
    for step, batch in enumerate(whole):
        assert shards[0][step].shape == (4, 3)
        together = np.concatenate([shards[0][step], shards[1][step]])
        np.testing.assert_array_equal(np.sort(together, axis=0), np.sort(batch, axis=0))
    with pytest.raises(ValueError, match="multiple of num_shards"):
        make_train_dataset(synthetic_faces, TINY, 9, AugmentConfig.none(), 0, 0, 1, num_shards=2)


def test_unknown_strategy_and_missing_tf_config(monkeypatch):
    from qa_headpose.training import distribute

    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.make_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        distribute.read_tf_config()


_MIRRORED_2CPU = """
import json, sys
from qa_headpose.training._keras import tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from qa_headpose.training import workflow
from qa_headpose.training.config import AugmentConfig, ModelConfig, QATConfig, TrainConfig
from qa_headpose.datasets.npz import load_fsanet_npz
prepared = workflow.PreparedData(load_fsanet_npz(sys.argv[1]), load_fsanet_npz(sys.argv[2]), {"data": []})
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
aug = AugmentConfig(rotate_deg=10.0)
summary = workflow.train_run(sys.argv[3], prepared, ModelConfig(input_size=32, alpha=0.35, dropout=0.0),
    TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, augment=aug),
    QATConfig(epochs=1, batch_size=16, learning_rate=1e-4, augment=aug), verbose=0, strategy=strategy)
print(json.dumps({"replicas": summary["replicas"], "qat_mae": summary["qat"]["val"]["mean"]}))
"""


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_float_and_qat(tmp_path, synthetic_faces):
    """MirroredStrategy over 2 logical CPUs: each replica gets half of the global batch."""
    train, val = _write_npz(synthetic_faces, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED_2CPU, str(train), str(val), str(tmp_path / "run")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and np.isfinite(result["qat_mae"])
    assert (tmp_path / "run" / "qat" / "best.weights.h5").is_file()


def _start_workers(run: Path, train: Path, val: Path, logs: Path, epochs: int, resume: bool = False):
    """Two ``qa-headpose train --strategy multiworker`` processes on free 127.0.0.1 ports."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        # One intra-op thread each: the two workers share this machine's CPUs.
        env.update({"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"})
        cmd = [
            sys.executable, "-m", "qa_headpose.cli", "train", "--strategy", "multiworker",
            "--data", str(train), "--val-data", str(val), "--out", str(run),
            "--input-size", str(TINY), "--alpha", "0.35", "--dropout", "0", "--batch-size", "16",
            "--epochs", str(epochs), "--qat-epochs", "1", "--seed", "3", "--quiet",
        ] + (["--resume"] if resume else [])  # fmt: skip
        with open(logs / f"worker{index}.log", "a") as log:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _wait_all(procs, timeout: float) -> list[int] | None:
    """Exit codes, or None after ``timeout`` s; never leaves a worker running."""
    start = time.monotonic()
    try:
        return [p.wait(timeout=max(1.0, timeout - (time.monotonic() - start))) for p in procs]
    except subprocess.TimeoutExpired:
        return None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _wait_for_file(path: Path, procs, logs: Path) -> None:
    """Polls for ``path`` while every worker runs, up to `WORKER_TIMEOUT_S`."""
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not path.exists():
        assert all(p.poll() is None for p in procs), _worker_logs(logs)
        assert time.monotonic() < deadline, f"no {path} after {WORKER_TIMEOUT_S} s\n{_worker_logs(logs)}"
        time.sleep(0.05)


def _worker_logs(folder: Path) -> str:
    return "\n".join(f"--- worker {i}\n" + (folder / f"worker{i}.log").read_text()[-3000:] for i in range(2))


@pytest.mark.slow
def test_two_workers_multiworker_float_and_qat(tmp_path, synthetic_faces):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train 1 float + 1 QAT epoch; the chief writes the run.

    Worker 1 is paused (SIGSTOP) for `PAUSE_S` after the float checkpoint, longer than
    TensorFlow's 10 s heartbeat timeout, which aborted both workers of this test on a busy
    CI machine; the run must survive it (`distribute.HEARTBEAT_TIMEOUT_S`).
    Slow: 262 s on the 2-core dev machine under a load average of 7 (two TF processes
    tracing the QAT graph at once).
    """
    from qa_headpose.training.distribute import HEARTBEAT_TIMEOUT_S

    assert PAUSE_S < HEARTBEAT_TIMEOUT_S
    train, val = _write_npz(synthetic_faces, tmp_path)
    run = tmp_path / "run"
    procs = _start_workers(run, train, val, tmp_path, epochs=1)
    _wait_for_file(run / "float" / "ckpt" / "checkpoint", procs, tmp_path)
    procs[1].send_signal(signal.SIGSTOP)
    try:
        time.sleep(PAUSE_S)  # the length of the pause under test, not a wait for an event
    finally:
        procs[1].send_signal(signal.SIGCONT)
    codes = _wait_all(procs, WORKER_TIMEOUT_S)
    output = _worker_logs(tmp_path)
    assert codes is not None, f"workers did not finish in {WORKER_TIMEOUT_S} s\n{output}"
    assert codes == [0, 0], output
    assert (run / "float" / "best.weights.h5").is_file() and (run / "qat" / "best.weights.h5").is_file(), output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 2
    assert summary["qat"]["epochs_run"] == 1 and np.isfinite(summary["qat"]["val"]["mean"])
    assert not (run / ".worker1").exists(), "the non-chief's scratch folder is removed at the end"


@pytest.mark.slow
def test_two_workers_killed_then_resumed(tmp_path, synthetic_faces):
    """SIGKILL both workers after the first float checkpoint; --resume on both finishes the run."""
    train, val = _write_npz(synthetic_faces, tmp_path)
    run = tmp_path / "run"
    procs = _start_workers(run, train, val, tmp_path, epochs=3)
    _wait_for_file(run / "float" / "ckpt" / "checkpoint", procs, tmp_path)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    assert _wait_all(procs, 30) == [-signal.SIGKILL] * 2

    codes = _wait_all(_start_workers(run, train, val, tmp_path, epochs=3, resume=True), WORKER_TIMEOUT_S)
    output = _worker_logs(tmp_path)
    assert codes == [0, 0], output
    summary = json.loads((run / "summary.json").read_text())
    assert 1 <= summary["float"]["epochs_run"] < 3, "resumed, not restarted"
    with open(run / "float" / "log.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1", "2"]
    assert (run / "qat" / "best.weights.h5").is_file() and not (run / ".worker1").exists()
