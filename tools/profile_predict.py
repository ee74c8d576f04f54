"""Profile of ``run_predict`` in this process: wall, time to the first result, CPU of the parent and its workers.

    python tools/profile_predict.py ../shared/data/AFLW2000 --jobs 2 [--threads 1] [--top 12]

Prints one summary line (rows, wall s, first result s, parent CPU s, workers' CPU s, the parent's
context switches) and the parent's ``cProfile`` functions by own time. The workers' CPU is that of the
processes the parent reaped (``RUSAGE_CHILDREN``), so the pool must have ended: it has, when
``run_predict`` returns.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import time

from qa_headpose.predict import PredictConfig, run_predict


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()
    cfg = PredictConfig(inputs=(args.folder,), threads=args.threads, jobs=args.jobs)
    first: list[float] = []
    start = time.perf_counter()
    profile = cProfile.Profile()
    profile.enable()
    summary = run_predict(cfg, on_source=lambda r: first or first.append(time.perf_counter() - start))
    profile.disable()
    wall = time.perf_counter() - start
    me, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"jobs {args.jobs}: {len(summary.rows)} rows, wall {wall:.2f} s, first result {first[0]:.2f} s, "
        f"parent cpu {me.ru_utime + me.ru_stime:.2f} s, workers cpu {workers.ru_utime + workers.ru_stime:.2f} s, "
        f"parent context switches voluntary {me.ru_nvcsw} involuntary {me.ru_nivcsw}"
    )
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
