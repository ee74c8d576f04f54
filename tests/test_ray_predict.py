"""``predict --ray`` on a real two-node Ray cluster started here (``ray start --head`` + a second node, 1 CPU each).

Skipped without Ray (``pip install -e .[ray]``). The cluster is started once for the module and stopped at
its end by its process groups; the node-kill test runs last, since it leaves one node.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install -e .[ray]")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402

from qa_headpose.predict import COLUMNS, PredictConfig, ray_data, run_predict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120.0  # s, for a node on a loaded 2-core machine


# Starting, walking and stopping local nodes: the measurement tool's helpers (one home for both).
_ray_nodes_spec = importlib.util.spec_from_file_location("measure_ray", REPO / "tools" / "measure_ray.py")
ray_nodes = importlib.util.module_from_spec(_ray_nodes_spec)
_ray_nodes_spec.loader.exec_module(ray_nodes)
OBJECT_STORE_MB = 80  # per test node: small, the inputs are a few images


def _bounded(call, timeout: float = 300.0):
    """``call()`` in a thread; fails the test (instead of hanging the suite) past ``timeout`` s."""
    done, box = threading.Event(), {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(timeout), f"the Ray run took over {timeout:.0f} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"])


def _wait(condition, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, 1 CPU each; yields {"address", "head", "worker"}. Node deaths seen within ~2 s."""
    temp = Path(tempfile.mkdtemp(prefix="qrt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = ray_nodes.free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_health_check_period_ms="500")
    env.update(RAY_health_check_failure_threshold="3", RAY_health_check_timeout_ms="1000", RAY_USAGE_STATS_ENABLED="0")
    env.update(RAY_BACKEND_LOG_LEVEL="warning", RAY_AUTH_MODE="disabled")  # a private cluster on loopback
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # this process is the cluster's driver
    address = f"127.0.0.1:{port}"
    head_args = ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"]
    head = ray_nodes.start_node(head_args, env, temp / "h", OBJECT_STORE_MB)
    worker = None
    try:
        _wait(lambda: (temp / "ray_current_cluster").exists() or head.poll() is not None, "the head node")
        assert head.poll() is None, (temp / "h").read_text(errors="replace")[-2000:]
        worker = ray_nodes.start_node([f"--address={address}"], env, temp / "w", OBJECT_STORE_MB)
        ray.init(address=address, log_to_driver=False)
        _wait(lambda: _alive_nodes() == 2, "the second node")
        yield {"address": address, "head": head, "worker": worker}
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
        for proc in (worker, head):
            if proc is not None:
                ray_nodes.stop_node(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, aflw_dir) -> Path:
    """18 inputs: 16 AFLW2000 images, a corrupt file and a faceless image."""
    folder = tmp_path_factory.mktemp("ray_inputs")
    for path in sorted(aflw_dir.glob("*.jpg"))[:16]:
        (folder / path.name).symlink_to(path)
    (folder / "corrupt.jpg").write_bytes(os.urandom(1500))
    cv2.imwrite(str(folder / "wall.png"), np.full((90, 120, 3), 200, np.uint8))
    return folder


def _faces(table) -> list[dict]:
    return [{k: row[k] for k in COLUMNS} for row in table.to_pylist() if row["face"] is not None]


def test_two_nodes_give_jobs_1_rows_and_an_error_row(cluster, inputs, tmp_path):
    one = run_predict(PredictConfig(inputs=(str(inputs),), threads=1))
    out = tmp_path / "poses.parquet"
    cfg = PredictConfig(inputs=(str(inputs),), threads=1)
    summary = _bounded(lambda: ray_data.run_ray(cfg, cluster["address"], out))
    table = pq.read_table(out)
    assert table.column_names == list(ray_data.RAY_COLUMNS)
    assert _faces(table) == one.rows  # same rows, same order
    rows = table.to_pylist()
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert list(errors) == ["corrupt.jpg"] and errors["corrupt.jpg"].startswith("Cannot decode image")
    faceless = [Path(r["path"]).name for r in rows if r["face"] is None and not r["error"]]
    assert "wall.png" in faceless
    assert sorted({Path(r["path"]).name for r in rows}) == sorted(p.name for p in inputs.iterdir())
    assert (summary.inputs, summary.failed, summary.status) == (18, 1, one.status)


def test_parquet_of_bytes_and_a_users_dataset(cluster, inputs, tmp_path):
    paths = sorted(str(p) for p in inputs.iterdir())
    table = pa.table({"path": paths, "bytes": [Path(p).read_bytes() for p in paths]})
    pq.write_table(table, tmp_path / "images.parquet")
    out = tmp_path / "from_bytes.parquet"
    cfg = PredictConfig(inputs=(str(tmp_path / "images.parquet"),), threads=1)
    _bounded(lambda: ray_data.run_ray(cfg, cluster["address"], out))
    from_bytes = pq.read_table(out)
    one = run_predict(PredictConfig(inputs=tuple(paths), threads=1))
    assert _faces(from_bytes) == one.rows
    # A user's own dataset: read_binary_files gives the same "path" and "bytes" columns.
    jpegs = [p for p in paths if p.endswith(".jpg")][:4]
    ds = ray.data.read_binary_files(jpegs, include_paths=True, ray_remote_args={"num_cpus": 0})
    poses = _bounded(lambda: ray_data.estimate_poses(ds, PredictConfig(threads=1), concurrency=2).to_pandas())
    by_name = {Path(r["file"]).name: r for r in one.rows}
    for _, row in poses.iterrows():
        if row["error"] is None and not np.isnan(row["face"]):
            assert row["yaw"] == by_name[Path(row["path"]).name]["yaw"]
    assert len(poses) >= 4


def test_a_node_killed_mid_run_loses_and_repeats_no_input(cluster, inputs, tmp_path):
    """SIGKILL to the second node's processes after the first rows arrive: every input comes out exactly once."""
    many = tmp_path / "many"
    many.mkdir()
    for k in range(12):  # 216 inputs, so most of the work is still ahead when the node dies
        for path in sorted(inputs.iterdir()):
            (many / f"{k:02d}_{path.name}").symlink_to(path.resolve())
    killed: list[int] = []

    def kill_worker_node(stage, done, total) -> None:
        if not killed and done:
            killed.append(done)
            ray_nodes.stop_node(cluster["worker"])

    out = tmp_path / "poses.parquet"
    cfg = PredictConfig(inputs=(str(many),), threads=1)
    summary = _bounded(lambda: ray_data.run_ray(cfg, cluster["address"], out, on_progress=kill_worker_node))
    assert killed and killed[0] < 216 / 2, killed
    _wait(lambda: _alive_nodes() == 1, "the head to see the node gone", timeout=30)
    rows = pq.read_table(out).to_pylist()
    per_input: dict[str, list] = {}
    for row in rows:
        per_input.setdefault(Path(row["path"]).name, []).append(row)
    assert sorted(per_input) == sorted(p.name for p in many.iterdir())  # every input, none twice:
    one: dict[str, list] = {}
    for r in run_predict(PredictConfig(inputs=(str(inputs),), threads=1)).rows:
        one.setdefault(Path(r["file"]).name, []).append({k: r[k] for k in COLUMNS if k != "file"})
    for name, got in per_input.items():  # each input's faces once (or its one no-face/error row)
        expected = one.get(name.split("_", 1)[1])
        assert [{k: r[k] for k in COLUMNS if k != "file"} for r in got] == expected if expected else len(got) == 1
    assert summary.inputs == 216 and summary.failed == 12
