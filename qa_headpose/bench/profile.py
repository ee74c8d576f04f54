"""Where an int8 model's time goes: MACs per op, a per-op profile on LiteRT, and the compute bound.

Profiling needs the raw interpreter (a model cut after each op, XNNPACK on or off), not
`TFLiteRunner`: it times ``invoke`` alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qa_headpose.bench.timing import time_calls

# int8 multiply-accumulates per cycle and core that the widest dot-product instruction
# can retire (one 512-bit VPDPBUSD, or two 256-bit ones, per cycle): an assumption
# for the compute bound, not a measurement.
INT8_MACS_PER_CYCLE = {"avx512_vnni": 64, "avx_vnni": 64, "avx2": 32}


def count_macs(model_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Multiply-accumulates of every op of a .tflite at batch 1, from its tensor shapes.

    Convolutions: output elements x kernel area x input channels (depthwise: x 1);
    fully connected: outputs x inputs. Other ops count 0 MACs; ``elements`` gives
    their output size.

    Returns:
        One dict per op in execution order: index, op, output shape, macs, elements.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(model_path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter.allocate_tensors()
    shapes = {t["index"]: tuple(int(s) for s in t["shape"]) for t in interpreter.get_tensor_details()}
    ops = []
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        out_shape = shapes.get(op["outputs"][0], ())
        elements = int(np.prod(out_shape)) if out_shape else 0
        macs = 0
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op["inputs"]) > 1:
            w = shapes[op["inputs"][1]]  # CONV: (out, kh, kw, in); DEPTHWISE: (1, kh, kw, out)
            macs = elements * w[1] * w[2] * (w[3] if name == "CONV_2D" else 1)
        elif name == "FULLY_CONNECTED" and len(op["inputs"]) > 1:
            w = shapes[op["inputs"][1]]  # (out, in)
            macs = elements * w[1]
        ops.append(
            {
                "index": int(op["index"]),
                "op": name,
                "output_shape": list(out_shape),
                "macs": int(macs),
                "elements": elements,
                "inputs": [int(t) for t in op["inputs"] if t >= 0],
                "outputs": [int(t) for t in op["outputs"]],
            }
        )
    return ops


def _prefix_models(model_bytes: bytes, cuts: Sequence[int]) -> list[bytes]:
    """For each op index k in ``cuts``, the model cut after op k (its output becomes the model's output)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    all_ops, outputs = list(graph.operators), list(graph.outputs)
    prefixes = []
    try:
        for k in cuts:
            graph.operators = all_ops[: k + 1]
            graph.outputs = [int(all_ops[k].outputs[0])]
            prefixes.append(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    finally:
        graph.operators, graph.outputs = all_ops, outputs
    return prefixes


def profile_tflite_ops(
    model_path: str | os.PathLike,
    num_threads: int = 1,
    runs: int = 200,
    warmup: int = 20,
    xnnpack: bool = True,
) -> dict[str, Any]:
    """Per-op time of a .tflite with ai_edge_litert, by timing the model cut after each op.

    The pip interpreters expose no op profiler (TFLite's ``benchmark_model
    --enable_op_profiling`` is a separate binary, not shipped in ai-edge-litert or
    tensorflow wheels), so op k's time is estimated as the fastest invoke of the
    model truncated after op k minus that of the model truncated after op k-1 (the
    fastest, not the median, so that other processes on the machine do not leak
    into the differences). Op 0's estimate includes the fixed cost of one ``invoke``.
    With XNNPACK, a PAD that feeds the next convolution is fused into it, so the pair
    is timed as one (the PAD shows 0 ms, ``timed_with_next``; the convolution
    ``includes`` it). Cutting the graph also changes what the last op writes to (a
    model output instead of an internal tensor), so single ops carry a few
    microseconds of error, sometimes negative; per-op-type sums are more reliable.

    Args:
        model_path: the .tflite file.
        num_threads: interpreter threads.
        runs: timed invokes per truncated model.
        warmup: untimed invokes per truncated model.
        xnnpack: XNNPACK delegate on (the default interpreter) or off.

    Returns:
        {"ops": [...per op: index, op, output_shape, macs, ms, gmacs_per_s],
        "by_op": {op type: {count, ms, macs, share}}, "total_ms" (fastest invoke of the full model),
        "sum_ms" (sum of the per-op estimates), "macs", "threads", "xnnpack", "method"}.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    payload = Path(model_path).read_bytes()
    ops = count_macs(model_path)

    def median_invoke(content: bytes) -> float:
        interpreter = Interpreter(
            model_content=content, num_threads=int(num_threads), experimental_op_resolver_type=resolver
        )
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
        # The minimum, not the median: differences of per-prefix times must not carry
        # the preemptions of whatever else runs on the machine.
        return float(np.min(time_calls(interpreter.invoke, warmup, runs)))

    # XNNPACK folds a PAD into the convolution that reads it; a model cut right after the
    # PAD would time an unfused PAD, so PAD and its consumer are timed together.
    fused = {
        k
        for k in range(len(ops) - 1)
        if xnnpack and ops[k]["op"] == "PAD" and ops[k]["outputs"][0] in ops[k + 1]["inputs"]
    }
    cuts = [k for k in range(len(ops)) if k not in fused]
    cumulative = dict(zip(cuts, (median_invoke(p) for p in _prefix_models(payload, cuts))))
    total = median_invoke(payload)
    previous = 0.0
    for k, op in enumerate(ops):
        if k in fused:
            op["ms"], op["gmacs_per_s"], op["timed_with_next"] = 0.0, None, True
            continue
        op["ms"] = round(cumulative[k] - previous, 5)
        op["gmacs_per_s"] = round(op["macs"] / (op["ms"] * 1e6), 2) if op["macs"] and op["ms"] > 0 else None
        if k - 1 in fused:
            op["includes"] = ops[k - 1]["op"]
        previous = cumulative[k]
    by_op: dict[str, dict[str, Any]] = {}
    for op in ops:
        agg = by_op.setdefault(op["op"], {"count": 0, "ms": 0.0, "macs": 0})
        agg["count"] += 1
        agg["ms"] += op["ms"]
        agg["macs"] += op["macs"]
    sum_ms = sum(op["ms"] for op in ops)
    for agg in by_op.values():
        agg["ms"] = round(agg["ms"], 4)
        agg["share"] = round(agg["ms"] / sum_ms, 3) if sum_ms > 0 else None
        agg["gmacs_per_s"] = round(agg["macs"] / (agg["ms"] * 1e6), 2) if agg["macs"] and agg["ms"] > 0 else None
    return {
        "model": str(model_path),
        "threads": int(num_threads),
        "xnnpack": bool(xnnpack),
        "runs": int(runs),
        "method": "fastest invoke of the model cut after op k minus that of the model cut after op k-1, ai_edge_litert",
        "total_ms": round(total, 4),
        "sum_ms": round(sum_ms, 4),
        "macs": int(sum(op["macs"] for op in ops)),
        "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]["ms"])),
        "ops": ops,
    }


def compute_bound(profile: dict[str, Any], system: dict[str, Any], measured_ms: float | None = None) -> dict[str, Any]:
    """How far an int8 model's time is from what the CPU could do on its MACs.

    Args:
        profile: from `profile_tflite_ops`.
        system: from `system.system_info` (clock, flags, cores).
        measured_ms: the model's batch-1 time to compare (default: the profile's total).

    Returns:
        macs, measured ms, achieved GMAC/s; ``isa_peak_gmacs_per_s`` = cores used x clock x
        int8 MACs/cycle of the widest dot-product instruction (an assumption, stated in
        ``isa_assumption``) and the time that peak would take; ``best_op_gmacs_per_s`` = the
        fastest op's measured rate among the ops holding >= 2% of the MACs and >= 2% of the
        time, and the time the whole model would take at that rate; ``conv_gmacs_per_s`` =
        the rate of all CONV_2D ops together and the time of the model at that rate.
    """
    ms = float(measured_ms if measured_ms is not None else profile["total_ms"])
    macs = int(profile["macs"])
    achieved = macs / (ms * 1e6) if ms > 0 else None
    flags = set(system.get("cpu_flags") or [])
    isa = next((f for f in INT8_MACS_PER_CYCLE if f in flags), None)
    per_cycle = INT8_MACS_PER_CYCLE.get(isa, 16)
    cores = min(int(profile["threads"]), int(system.get("cpus_available") or 1))
    ghz = (system.get("cpu_mhz") or 0) / 1000
    peak = cores * ghz * per_cycle if ghz else None
    # Per-op times are differences of medians: only ops well above the noise count.
    floor = max(0.003, 0.02 * float(profile["sum_ms"]))
    big = [op for op in profile["ops"] if op["macs"] >= 0.02 * macs and op.get("gmacs_per_s") and op["ms"] >= floor]
    best = max((op["gmacs_per_s"] for op in big), default=None)
    conv = profile["by_op"].get("CONV_2D", {})
    conv_rate = conv.get("gmacs_per_s")
    return {
        "macs": macs,
        "threads": int(profile["threads"]),
        "measured_ms": round(ms, 4),
        "achieved_gmacs_per_s": round(achieved, 2) if achieved else None,
        "isa_assumption": f"{per_cycle} int8 MACs/cycle/core ({isa or 'no VNNI/AVX2'}), "
        f"{cores} core(s) at {ghz:.2f} GHz",
        "isa_peak_gmacs_per_s": round(peak, 1) if peak else None,
        "isa_bound_ms": round(macs / (peak * 1e6), 4) if peak else None,
        "fraction_of_isa_peak": round(achieved / peak, 3) if peak and achieved else None,
        "best_op_gmacs_per_s": best,
        "best_op_bound_ms": round(macs / (best * 1e6), 4) if best else None,
        "conv_gmacs_per_s": conv_rate,
        "conv_rate_bound_ms": round(macs / (conv_rate * 1e6), 4) if conv_rate else None,
    }
