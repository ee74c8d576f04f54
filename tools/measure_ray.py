"""Images/s of ``predict --ray`` on 1 and 2 local Ray nodes (1 CPU each), per-node memory, and ``--jobs 2`` beside.

    python tools/measure_ray.py ../shared/data/AFLW2000 [--limit 1405]

Starts a head node (``ray start --head --num-cpus 1``), runs the folder through `ray_data.run_ray`
(the driver is this process), adds a second node and runs it again, then runs
``qa-headpose predict DIR --jobs 2 --threads 1 --csv`` on the same inputs, back to back, so the three
compare under about the same load. Prints per run: wall seconds, images/s, the CPU the other processes
of the machine used meanwhile (cores, /proc/stat less this run's own processes), and each node's peak
resident memory (its ``ray start`` process tree: raylet, GCS on the head, workers; the shared-memory
object store not counted). The nodes are stopped by process id at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process started under it (Ray's workers leave its process group, not its tree)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _busy_s() -> float:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_node(args: list[str], env: dict, log: Path, object_store_mb: int = 200) -> subprocess.Popen:
    """``ray start --block`` with 1 CPU, output to ``log``; its own session, so `stop_node` finds all of it."""
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--num-cpus", "1", *args]
    cmd += ["--object-store-memory", str(object_store_mb * 2**20)]
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def stop_node(proc: subprocess.Popen) -> None:
    """Kills a node: its `ray start` process and every process under it, by id."""
    for pid in process_tree(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def _measured(label: str, n: int, run, nodes: dict[str, subprocess.Popen]) -> None:
    """Runs ``run()`` (which returns the CPU seconds of processes it reaped itself, or 0) and prints one line."""
    peaks = {name: 0.0 for name in nodes}
    cpu: dict[int, float] = {}  # CPU seen per process of the nodes (and this one), sampled every 0.5 s
    stop = threading.Event()

    def sample() -> None:
        while True:
            for pid in [os.getpid(), *(q for proc in nodes.values() for q in process_tree(proc.pid))]:
                cpu[pid] = max(cpu.get(pid, 0.0), _cpu_s(pid))
            for name, proc in nodes.items():
                peaks[name] = max(peaks[name], _rss_mb(process_tree(proc.pid)))
            if stop.wait(0.5):
                return

    before = {
        pid: _cpu_s(pid) for pid in [os.getpid(), *(q for proc in nodes.values() for q in process_tree(proc.pid))]
    }
    busy0, start = _busy_s(), time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    reaped = run()
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    own = sum(v - before.get(pid, 0.0) for pid, v in cpu.items()) + reaped
    others = max(0.0, _busy_s() - busy0 - own) / wall
    memory = ", ".join(f"{name} peak RSS {mb:.0f} MB" for name, mb in peaks.items())
    print(
        f"{label}: {wall:.2f} s, {n / wall:.1f} images/s, own CPU {own:.1f} s, others {others:.2f} cores"
        + (f"; {memory}" if memory else ""),
        flush=True,
    )


def _run_reaped(cmd: list[str], env: dict) -> float:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--limit", type=int, help="first N images only")
    args = p.parse_args()
    import pyarrow.parquet as pq
    import ray

    from qa_headpose.predict import PredictConfig, ray_data
    from qa_headpose.predict.sources import collect_sources

    sources, _ = collect_sources([args.folder])
    paths = [str(s.path) for s in sources][: args.limit]
    temp = Path(tempfile.mkdtemp(prefix="qrm", dir="/tmp"))
    listing = temp / "inputs.txt"
    listing.write_text("\n".join(os.path.abspath(p) for p in paths) + "\n")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    address = f"127.0.0.1:{port}"
    nodes = {
        "head": start_node(
            ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"], env, temp / "h"
        )
    }
    try:
        deadline = time.monotonic() + 180
        while not (temp / "ray_current_cluster").exists():
            assert time.monotonic() < deadline and nodes["head"].poll() is None, "the head node did not start"
            time.sleep(0.2)
        ray_data.connect(address)
        cfg = PredictConfig(inputs=(str(listing),), threads=1)
        for count in (1, 2):
            if count == 2:
                nodes["worker"] = start_node([f"--address={address}"], env, temp / "w")
                while sum(n["Alive"] for n in ray.nodes()) < 2:
                    time.sleep(0.2)
            out = temp / f"nodes{count}.parquet"
            _measured(f"ray, {count} node(s)", len(paths), lambda: ray_data.run_ray(cfg, address, out) and 0.0, nodes)
            print(f"  rows {pq.read_metadata(out).num_rows}")
        ray.shutdown()
        for name in list(nodes):
            stop_node(nodes.pop(name))
        for jobs in (1, 2):
            cmd = [sys.executable, "-m", "qa_headpose.cli", "predict", *paths, "--csv", str(temp / f"j{jobs}.csv")]
            cmd += ["--quiet", "--force", "--threads", "1", "--jobs", str(jobs)]
            _measured(f"--jobs {jobs}", len(paths), lambda c=cmd: _run_reaped(c, env), {})
    finally:
        for proc in nodes.values():
            stop_node(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
