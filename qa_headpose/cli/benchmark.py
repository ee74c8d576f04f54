"""``qa-headpose benchmark``: latency, throughput, size, memory and MAE of every model and runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qa_headpose.cli.common import (
    EXIT_OK,
    UsageError,
    add_progress,
    add_runs_dir,
    check_output,
    int_list,
    non_negative_float,
    positive_int,
    progress_bar,
)

HELP = "latency, throughput, size, memory and MAE of every model and runtime"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``benchmark``."""
    p.add_argument(
        "--model",
        nargs="+",
        metavar="NAME|PATH",
        help="shipped model names (accurate, fast), .tflite/.onnx files, folders of them, run folders or float "
        "weights .h5 (default: each shipped model as int8 and float32 .tflite and Keras float, and your newest export)",
    )
    p.add_argument(
        "--run", type=Path, help="training run folder: adds its float Keras model (predict_on_batch and call rows)"
    )
    add_runs_dir(p)
    p.add_argument("--threads", type=int_list, help="thread counts, e.g. 2 or 1,2,4 (default: all cores)")
    p.add_argument("--batch-sizes", type=int_list, default=(1, 8), help="throughput batch sizes (default 1,8)")
    p.add_argument(
        "--runtimes",
        default="litert,keras",
        help="comma list of litert, tf.lite, onnxruntime, keras (predict_on_batch), keras.call, or all "
        "(default litert,keras)",
    )
    p.add_argument(
        "--xnnpack", choices=("on", "off", "both"), default="on", help="XNNPACK delegate of the TFLite interpreters"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    p.add_argument("--runs", type=positive_int, default=100, help="most timed batch-1 calls")
    p.add_argument(
        "--latency-seconds",
        type=non_negative_float,
        default=1.0,
        help="stop the timed batch-1 calls of a row after this long (at least 10 calls; 0: all --runs)",
    )
    p.add_argument("--throughput-seconds", type=non_negative_float, default=0.25, help="minimum time per batch size")
    g = p.add_argument_group("accuracy")
    g.add_argument(
        "--data",
        nargs="+",
        help="FSA-Net .npz file(s), 300W-LP/AFLW2000 or Pointing'04 folder(s): adds per-angle MAE and yaw by band",
    )
    g.add_argument(
        "--subset", choices=("val", "all"), default="val", help="val split of --data (all when it has no val face)"
    )
    g.add_argument("--split", default="aflw2000_val", help="committed val list name, or 'hash'")
    g.add_argument("--max-faces", type=positive_int, help="evaluate on the first N faces only")
    g = p.add_argument_group("analysis")
    g.add_argument("--profile", action="store_true", help="per-op profile and compute bound of each int8 .tflite")
    g.add_argument("--frame", action="store_true", help="time a 640x480 frame with one face through predict_image")
    g.add_argument(
        "--callers",
        type=int_list,
        metavar="N,..",
        help="faces/s with N threads sharing one HeadPoseEstimator (first int8 model), e.g. 1,2,4,8",
    )
    g = p.add_argument_group("output")
    g.add_argument("--json", type=Path, help="write every row, the machine and the settings as JSON")
    g.add_argument("--markdown", nargs="?", const="-", help="markdown table to FILE (or stdout without FILE)")
    g.add_argument("--plot", type=Path, help="PNG of latency vs threads per model")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_progress(p)


def _models(args: argparse.Namespace) -> list:
    """The models to measure: --model, else the shipped ones and your newest export; plus --run."""
    from qa_headpose import bench
    from qa_headpose.bench.models import model_spec

    if args.model:
        specs = bench.find_models(args.model)
    else:
        specs = bench.default_models()
        run = bench.newest_run(args.runs_dir)
        export = bench.run_export(run) if run is not None else None
        if export is not None:
            specs.append(model_spec(export, f"{run} int8", str(run)))
            print(f"also measuring your newest export {export}", file=sys.stderr)
        elif run is not None:
            print(
                f"note: your newest run {run} has no export yet (python export_tflite.py exports it)", file=sys.stderr
            )
    if args.run is not None:
        specs.append(model_spec(args.run))
    return specs


def run(args: argparse.Namespace) -> int:
    """Runs ``benchmark``; returns the exit code."""
    from qa_headpose import bench
    from qa_headpose.bench import report as bench_report
    from qa_headpose.inference.runtime import default_max_concurrency

    for out in (args.json, args.plot, None if args.markdown in (None, "-") else Path(args.markdown)):
        if out is not None:
            check_output(out, args.force)
    runtimes = tuple(v.strip() for v in args.runtimes.split(",") if v.strip())
    runtimes = bench.RUNTIMES if runtimes == ("all",) else runtimes
    if set(runtimes) - set(bench.RUNTIMES) or not runtimes:
        raise UsageError(f"--runtimes takes {', '.join(bench.RUNTIMES)} or all. Received: {args.runtimes!r}")
    cores = default_max_concurrency()
    threads = args.threads or (cores,)
    if max(threads) > cores:
        print(
            f"warning: --threads {max(threads)} exceeds the {cores} cores this process may use: "
            "threads beyond the cores only wait for each other",
            file=sys.stderr,
        )
    specs = _models(args)
    int8 = [s for s in specs if s.format == "tflite" and s.variant == "int8"]
    for flag, wanted in (("--frame", args.frame), ("--callers", args.callers)):
        if wanted and not int8:
            raise UsageError(f"{flag} needs an int8 .tflite among the models")
    xnnpack = {"on": (True,), "off": (False,), "both": (True, False)}[args.xnnpack]
    cfg = bench.BenchmarkConfig(
        threads=threads,
        batch_sizes=args.batch_sizes,
        warmup=args.warmup,
        runs=args.runs,
        latency_seconds=args.latency_seconds or None,
        throughput_seconds=args.throughput_seconds,
        runtimes=runtimes,
        xnnpack=xnnpack,
    )
    eval_data = _eval_data(args) if args.data else None
    with progress_bar(args, bench.count_rows(specs, cfg), "row") as bar:

        def progress(label: str, rows: int) -> None:
            if rows:
                bar.update(rows)
            elif not bar.disable:
                bar.set_description(label)
            elif not args.quiet:
                print(f"measuring {label}", file=sys.stderr)

        report = bench.run_benchmark(specs, cfg, eval_data, progress)
    report.command = _invocation()
    if args.profile:
        report.profile = {}
        for spec in int8:
            for t in threads:
                prof = bench.profile_tflite_ops(spec.path, t, runs=max(50, args.runs))
                prof["bound"] = bench.compute_bound(prof, report.system)
                report.profile[f"{spec.name}@{t}"] = prof
    limit = args.latency_seconds or None
    if args.frame:
        report.frame = [
            bench.measure_frame(int8[0].path, t, args.runs, args.warmup, max_seconds=limit) for t in threads
        ]
    if args.callers:
        report.callers = bench.measure_callers(
            int8[0].path, args.callers, seconds=max(4 * args.throughput_seconds, 0.2)
        )
    print(bench.format_table(report))
    for item in report.skipped:
        print(f"skipped {item['model']} on {item['runtime']}: {item['reason']}")
    for name, prof in (report.profile or {}).items():
        b = prof["bound"]
        top = ", ".join(f"{op} {v['ms']:.3f} ms ({v['share']:.0%})" for op, v in list(prof["by_op"].items())[:4])
        print(
            f"profile {name}: {prof['total_ms']:.3f} ms, {b['macs'] / 1e6:.1f} M MACs, {b['achieved_gmacs_per_s']} GMAC/s "
            f"= {b['fraction_of_isa_peak']} of the ISA peak {b['isa_peak_gmacs_per_s']} GMAC/s ({b['isa_assumption']}); "
            f"best op {b['best_op_gmacs_per_s']} GMAC/s -> bound {b['best_op_bound_ms']} ms; by op: {top}"
        )
    for f in report.frame or []:
        print(bench_report.frame_line(f))
    if report.callers:
        print("\n".join(bench_report.callers_lines(report.callers)))
    if args.json:
        bench.write_report_json(report, args.json)
        print(f"wrote {args.json}")
    if args.markdown == "-":
        print(bench.format_markdown(report))
    elif args.markdown:
        from qa_headpose.core.atomic import write_bytes

        write_bytes(args.markdown, bench.format_markdown(report).encode())
        print(f"wrote {args.markdown}")
    if args.plot:
        bench.plot_latency(report, args.plot)
        print(f"wrote {args.plot}")
    summary = bench.format_summary(report)
    if summary:
        print("\n".join([summary[0], *(f"  {line}" for line in summary[1:])]))
    return EXIT_OK


def _invocation() -> str:
    """The command line as typed, for the report."""
    import shlex

    prog = Path(sys.argv[0]).name
    prog = (
        "python -m qa_headpose.cli"
        if prog in ("__main__.py", "main.py")
        else (f"python {prog}" if prog.endswith(".py") else prog)
    )
    return " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])


def _eval_data(args: argparse.Namespace):
    from qa_headpose import evaluation

    split = None if args.split == "hash" else args.split
    return evaluation.benchmark_eval_data(args.data, args.subset, split, args.max_faces)
