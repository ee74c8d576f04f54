"""A benchmark report as a text table, markdown, a short summary, a latency plot and JSON. Nothing prints here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from qa_headpose.bench.results import BenchmarkReport, BenchmarkResult, xnnpack_label
from qa_headpose.core.figures import pyplot, save_png

_COLUMNS = (
    ("model", "model"),
    ("runtime", "runtime"),
    ("xnn", "xnnpack"),
    ("thr", "threads"),
    ("MB", "size"),
    ("min ms", "latency_min_ms"),
    ("p50 ms", "latency_p50_ms"),
    ("p90 ms", "latency_p90_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("e2e p50", "e2e_p50_ms"),
)


def _cells(r: BenchmarkResult, batch_sizes: Sequence[str], with_mae: bool) -> list[str]:
    cells = [
        r.model,
        r.runtime,
        xnnpack_label(r.xnnpack),
        str(r.threads),
        f"{r.file_size_bytes / 1e6:.2f}",
        f"{r.latency_min_ms:.3f}",
        f"{r.latency_p50_ms:.3f}",
        f"{r.latency_p90_ms:.3f}",
        f"{r.latency_p99_ms:.3f}",
        f"{r.e2e_p50_ms:.3f}",
    ]
    cells += [f"{r.throughput_fps[b]:.0f}" if b in r.throughput_fps else "" for b in batch_sizes]
    cells.append(f"{r.peak_rss_mb:.0f}")
    if with_mae:
        m = r.mae
        cells.append(
            " / ".join("n/a" if m[k] != m[k] else f"{m[k]:.2f}" for k in ("yaw", "pitch", "roll", "mean")) if m else ""
        )
    return cells


def _header(report: BenchmarkReport) -> tuple[list[str], list[str], bool]:
    batch_sizes = [str(b) for b in report.config.get("batch_sizes", [])]
    with_mae = any(r.mae for r in report.results)
    head = [c[0] for c in _COLUMNS] + [f"faces/s b{b}" for b in batch_sizes] + ["RSS MB"]
    if with_mae:
        head.append("MAE y/p/r/mean")
    return head, batch_sizes, with_mae


def format_table(report: BenchmarkReport) -> str:
    """The rows as an aligned plain-text table."""
    head, batch_sizes, with_mae = _header(report)
    rows = [head] + [_cells(r, batch_sizes, with_mae) for r in report.results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(report: BenchmarkReport) -> str:
    """A markdown section: machine, command, the table, and the notes the numbers need."""
    s = report.system
    head, batch_sizes, with_mae = _header(report)
    libs = ", ".join(f"{k} {v}" for k, v in s["libraries"].items() if v)
    lines = [
        f"Machine: {s['cpu_model']}, {s['cpus_available']} of {s['cpu_count']} cores available, "
        f"{(s['cpu_mhz'] or 0) / 1000:.2f} GHz, {', '.join(s['cpu_flags'])}; {s['platform']}; Python {s['python']}.",
        f"Libraries: {libs}.",
        f"Load average at start / end: {_loads(s.get('load_average_start'))} / "
        f"{_loads(s.get('load_average_end'))}; measured {s['date']}.",
        "",
    ]
    if report.command:
        lines += ["```", report.command, "```", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
    for r in report.results:
        lines.append("| " + " | ".join(_cells(r, batch_sizes, with_mae)) + " |")
    notes = sorted({r.note for r in report.results if r.note})
    lines += [
        "",
        "min/p50/p90/p99: one batch-1 call on a preprocessed float32 input, float pixels in and degrees out "
        "(LiteRT: TFLiteRunner, int8 quantize/dequantize included; min: the best single call, the least "
        "disturbed by other processes); e2e p50: from a uint8 face crop, preprocessing included; "
        "faces/s: batch b / median call time over "
        f"{report.config.get('throughput_seconds')} s of calls (the JSON also has them against wall time); "
        "RSS: peak of the process that measured that model "
        "on that runtime; MB: model file (Keras: the float weights .h5).",
    ]
    lines += [f"Note: {n}." for n in notes]
    for item in report.skipped:
        lines.append(f"Skipped: {item['model']} on {item['runtime']}: {item['reason']}.")
    for f in report.frame or []:
        lines += ["", frame_line(f) + "."]
    if report.callers:
        lines += ["", *callers_lines(report.callers)]
    summary = format_summary(report)
    if summary:
        lines += ["", "Summary:", "", *(f"- {line}" for line in summary[1:])]
    for name, prof in (report.profile or {}).items():
        lines += ["", *_profile_markdown(name, prof)]
    return "\n".join(lines) + "\n"


def _profile_markdown(name: str, prof: dict[str, Any]) -> list[str]:
    b = prof.get("bound") or {}
    lines = [
        f"Per-op profile of {name} ({prof['threads']} thread(s), XNNPACK {xnnpack_label(prof['xnnpack'])}; "
        f"{prof['method']}): full model {prof['total_ms']:.3f} ms, sum of ops {prof['sum_ms']:.3f} ms, "
        f"{prof['macs'] / 1e6:.1f} M MACs.",
        "",
        "| op | count | ms | share | GMAC/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, v in prof["by_op"].items():
        rate = f"{v['gmacs_per_s']:.1f}" if v.get("gmacs_per_s") else ""
        share = f"{v['share']:.0%}" if v.get("share") is not None else ""
        lines.append(f"| {op} | {v['count']} | {v['ms']:.4f} | {share} | {rate} |")
    if b:
        lines += [
            "",
            f"Compute bound: {b['achieved_gmacs_per_s']} GMAC/s achieved = {b['fraction_of_isa_peak']} of the ISA peak "
            f"{b['isa_peak_gmacs_per_s']} GMAC/s ({b['isa_assumption']}; bound {b['isa_bound_ms']} ms); the fastest "
            f"large op runs at {b['best_op_gmacs_per_s']} GMAC/s (bound {b['best_op_bound_ms']} ms), all CONV_2D "
            f"together at {b['conv_gmacs_per_s']} GMAC/s (bound {b['conv_rate_bound_ms']} ms).",
        ]
    return lines


def _loads(values: list[float] | None) -> str:
    return "n/a" if not values else " ".join(f"{v:.2f}" for v in values)


def plot_latency(report: BenchmarkReport, path: str | os.PathLike) -> None:
    """PNG of batch-1 p50 latency vs threads, one line per (model, runtime, XNNPACK).

    Raises:
        ImportError: if matplotlib is not installed.
    """
    plt = pyplot()
    lines: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for r in report.results:
        lines.setdefault(r.key(), []).append((r.threads, r.latency_p50_ms))
    fig, ax = plt.subplots(figsize=(11, 5.5))
    models = sorted({key[0] for key in lines})
    styles = sorted({key[1:] for key in lines})
    colours = plt.get_cmap("tab10")
    dashes = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
    markers = "osD^v<>"
    for (model, runtime, xnn), points in sorted(lines.items()):
        points.sort()
        label = f"{model} {runtime}" + (f" xnnpack {xnn}" if xnn != "-" else "")
        style = styles.index((runtime, xnn))
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color=colours(models.index(model) % 10),
            linestyle=dashes[style % len(dashes)],
            marker=markers[style % len(markers)],
            label=label,
        )
    ax.set_xlabel("threads")
    ax.set_ylabel("batch-1 latency p50 (ms)")
    ax.set_yscale("log")
    ax.set_xticks(sorted({r.threads for r in report.results}))
    ax.set_title(f"{report.system['cpu_model']}, {report.system['cpus_available']} cores")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_png(fig, path)


def write_report_json(report: BenchmarkReport, path: str | os.PathLike) -> None:
    """Writes the report as JSON (atomically)."""
    from qa_headpose.core.atomic import write_json

    write_json(path, report.to_dict())


# ---------------------------------------------------------------- one-line views
def frame_line(f: dict[str, Any]) -> str:
    """One line of a `frame.measure_frame` result."""
    return (
        f"whole frame {f['frame']} through HeadPoseEstimator.predict_image, {f['threads']} thread(s), "
        f"{f['detector']}: p50 {f['total_p50_ms']:.3f} ms (p90 {f['total_p90_ms']:.3f}); stages alone: detect "
        f"{f['detect_p50_ms']:.3f} + crop/preprocess {f['crop_preprocess_p50_ms']:.3f} + pose {f['pose_p50_ms']:.3f} ms"
    )


def callers_lines(c: dict[str, Any]) -> list[str]:
    """Lines of a `frame.measure_callers` result: faces/s per number of caller threads."""
    lines = [
        f"one HeadPoseEstimator shared by N caller threads ({Path(c['model']).name}, up to {c['max_concurrency']} "
        f"interpreters of {c['num_threads']} thread(s), {c['cpus']} CPUs, {c['seconds']:g} s each):"
    ]
    for r in c["rows"]:
        lines.append(
            f"  {r['callers']} caller(s): {r['image_faces_per_s']:.1f} faces/s predict_image (detect + pose), "
            f"{r['crop_faces_per_s']:.1f} faces/s predict (pose); largest difference from a lone call "
            f"{r['max_diff_deg']:g} deg"
        )
    return lines


def summarize(report: BenchmarkReport) -> list[dict[str, Any]]:
    """Per model family and thread count: the int8 .tflite against the float32 .tflite and the Keras model.

    Uses the LiteRT rows with XNNPACK on (else the first TFLite rows) and Keras
    ``predict_on_batch``. Speed-ups are ratios of batch-1 p50 latencies.

    Returns:
        One dict per (family, threads) with an int8 row: family, threads, input_size,
        int8_ms, best_faces_per_s (the int8 throughput of its best batch size) and best_batch, float32_ms,
        keras_ms, float32_speedup, keras_speedup (None where absent) and mae per form.
    """
    out = []
    families = list(dict.fromkeys(r.family or r.model for r in report.results))
    for family in families:
        rows = [r for r in report.results if (r.family or r.model) == family]
        int8_models = list(dict.fromkeys(r.model for r in rows if r.format == "tflite" and r.variant == "int8"))
        # Several int8 files in one folder: one line each, labelled by file, compared with nothing else.
        groups = (
            [(family, rows)] if len(int8_models) <= 1 else [(m, [r for r in rows if r.model == m]) for m in int8_models]
        )
        for label, group in groups:
            out += _summarize_group(label, group)
    return out


def _pick(rows: list[BenchmarkResult]) -> BenchmarkResult | None:
    """The LiteRT row with XNNPACK on, else the first TFLite row; None for none."""
    rows = sorted(rows, key=lambda r: (r.runtime != "litert", r.xnnpack is not True))
    return rows[0] if rows else None


def _summarize_group(family: str, rows: list[BenchmarkResult]) -> list[dict[str, Any]]:
    """`summarize` of the rows of one model (one int8 .tflite and its float forms)."""
    out = []
    for threads in sorted({r.threads for r in rows}):
        at = [r for r in rows if r.threads == threads]
        int8 = _pick([r for r in at if r.format == "tflite" and r.variant == "int8"])
        if int8 is None:
            continue
        f32 = _pick([r for r in at if r.format == "tflite" and r.variant == "float32"])
        keras = next((r for r in at if r.runtime == "keras.predict_on_batch"), None)
        best_batch, best_fps = max(int8.throughput_fps.items(), key=lambda kv: kv[1], default=("1", 0.0))
        out.append(
            {
                "family": family,
                "threads": threads,
                "input_size": int8.input_size,
                "int8_ms": int8.latency_p50_ms,
                "best_faces_per_s": best_fps,
                "best_batch": int(best_batch),
                "float32_ms": f32.latency_p50_ms if f32 else None,
                "keras_ms": keras.latency_p50_ms if keras else None,
                "float32_speedup": round(f32.latency_p50_ms / int8.latency_p50_ms, 2) if f32 else None,
                "keras_speedup": round(keras.latency_p50_ms / int8.latency_p50_ms, 2) if keras else None,
                "yaw_mae": _per_form("yaw", int8, f32, keras),
                "mae": _per_form("mean", int8, f32, keras),
            }
        )
    return out


def _per_form(key: str, int8, f32, keras) -> dict[str, float]:
    """One MAE entry (``mean`` or ``yaw``) of each form of a model that was evaluated."""
    forms = (("int8", int8), ("float32", f32), ("keras", keras))
    return {name: r.mae[key] for name, r in forms if r is not None and r.mae}


def format_summary(report: BenchmarkReport) -> list[str]:
    """The short summary the benchmark ends with: a heading, then one line per model family and thread count."""
    items = summarize(report)
    if not items:
        return []
    s = report.system
    loads = s.get("load_average_start") or []
    cpus = s.get("cpus_available") or 1
    busy = ""
    if loads and loads[0] > 0.5 * cpus:
        busy = f"; machine busy (load average {loads[0]:.1f} on {cpus} cores): times are longer than on an idle machine"
    lines = [f"summary: batch-1 p50 on LiteRT with XNNPACK, speed-up of int8{busy}"]
    for it in items:
        parts = [
            f"{it['family']} ({it['input_size']}x{it['input_size']}, {it['threads']} thread(s)): int8 "
            f"{it['int8_ms']:.2f} ms, {it['best_faces_per_s']:.0f} faces/s (batch {it['best_batch']})"
        ]
        if it["float32_ms"] is not None:
            parts.append(f"float32 .tflite {it['float32_ms']:.2f} ms: int8 {it['float32_speedup']:.1f}x faster")
        if it["keras_ms"] is not None:
            parts.append(f"Keras float {it['keras_ms']:.2f} ms: int8 {it['keras_speedup']:.1f}x faster")
        if it["mae"]:
            # Data without roll (Pointing'04) has no mean over the three angles: its yaw is the headline then.
            mae = {k: v for k, v in it["mae"].items() if v == v}
            label = "MAE" if mae else "yaw MAE"
            mae = mae or {k: v for k, v in it.get("yaw_mae", {}).items() if v == v}
            parts.append(f"{label} " + ", ".join(f"{k} {v:.2f}" for k, v in mae.items()) + " deg")
        lines.append(" | ".join(parts))
    return lines
