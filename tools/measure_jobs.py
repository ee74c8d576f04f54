"""Wall time of ``qa-headpose predict DIR --jobs N`` for several N, with how busy the rest of the machine was.

    python tools/measure_jobs.py ../shared/data/AFLW2000 --jobs 1,2 --repeats 3 [--src OTHER_CHECKOUT]

Each repeat runs every N back to back (so a ratio compares runs under about the same load), as
``predict DIR --csv OUT --quiet --force --threads 1 --jobs N``, in a fresh process, and prints one line
per run: wall seconds, the run's own CPU seconds (user + sys of the process and its workers), and the
CPU the *other* processes of the machine used meanwhile, in cores (from /proc/stat, the run's own CPU
taken out). With ``--quiet-below C`` a run waits (up to --wait s) until the others use less than C cores.
The CSVs of all N must be equal (same rows, same order); the script says so or fails.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _others_cores(seconds: float = 1.0) -> float:
    b0, _ = _busy_jiffies()
    time.sleep(seconds)
    b1, _ = _busy_jiffies()
    return (b1 - b0) / os.sysconf("SC_CLK_TCK") / seconds


def run_once(src: Path, folder: str, jobs: int, out: Path, extra: list[str]) -> dict:
    """One predict run in a fresh process; wall, own CPU and the others' CPU in cores."""
    env = dict(os.environ, PYTHONPATH=str(src))
    argv = [sys.executable, "-m", "qa_headpose.cli", "predict", folder, "--csv", str(out), "--quiet", "--force"]
    argv += ["--threads", "1", "--jobs", str(jobs), *extra]
    tick = os.sysconf("SC_CLK_TCK")
    b0, _ = _busy_jiffies()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    b1, _ = _busy_jiffies()
    own = usage.ru_utime + usage.ru_stime  # includes the workers it reaped
    others = max(0.0, (b1 - b0) / tick - own) / wall
    return {"jobs": jobs, "wall": wall, "cpu": own, "others": others, "status": os.waitstatus_to_exitcode(status)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--jobs", default="1,2", help="comma-separated N")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--src", type=Path, default=REPO, help="checkout whose qa_headpose runs (default: this one)")
    p.add_argument("--quiet-below", type=float, help="wait until the other processes use fewer cores than this")
    p.add_argument("--wait", type=float, default=300.0, help="longest wait for a quiet machine, s")
    p.add_argument("extra", nargs="*", help="more predict flags, after --")
    args = p.parse_args(argv)
    jobs = [int(j) for j in args.jobs.split(",")]
    results: dict[int, list[dict]] = {j: [] for j in jobs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            if args.quiet_below is not None:
                deadline = time.monotonic() + args.wait
                while _others_cores() >= args.quiet_below and time.monotonic() < deadline:
                    pass
            for j in jobs:
                res = run_once(args.src, args.folder, j, Path(tmp) / f"jobs{j}.csv", args.extra)
                results[j].append(res)
                print(
                    f"repeat {r + 1} jobs {j}: {res['wall']:.2f} s wall, {res['cpu']:.2f} s CPU, "
                    f"others {res['others']:.2f} cores, exit {res['status']}",
                    flush=True,
                )
            ratios = [results[jobs[0]][-1]["wall"] / results[j][-1]["wall"] for j in jobs[1:]]
            print(f"repeat {r + 1}: speed-up vs jobs {jobs[0]}: " + ", ".join(f"{x:.2f}x" for x in ratios), flush=True)
        same = all(filecmp.cmp(Path(tmp) / f"jobs{jobs[0]}.csv", Path(tmp) / f"jobs{j}.csv", False) for j in jobs)
    for j in jobs[1:]:
        r = [a["wall"] / b["wall"] for a, b in zip(results[jobs[0]], results[j])]
        print(
            f"jobs {j} vs {jobs[0]}: median speed-up {statistics.median(r):.2f}x (runs: {', '.join(f'{x:.2f}' for x in r)})"
        )
    print("CSV equal across jobs" if same else "CSV DIFFERS across jobs")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
