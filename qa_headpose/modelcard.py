"""The shipped model's card: what it was trained on, how well it does, what it expects."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa_headpose import angles
from qa_headpose.config import CROP_MARGIN, write_bytes_atomic, write_json_atomic


def time_batch1(model_path: str | os.PathLike, threads: int, runs: int = 300, warmup: int = 20) -> dict[str, float]:
    """p50/p90 latency (ms) of one batch-1 interpreter call (quantize + invoke + dequantize)."""
    from qa_headpose.runtime import TFLiteRunner

    runner = TFLiteRunner(model_path, num_threads=threads)
    x = np.random.default_rng(0).uniform(0, 255, (1, runner.input_size, runner.input_size, 3)).astype(np.float32)
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90))}


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ship(
    run_dir: str | os.PathLike,
    exported_dir: str | os.PathLike,
    dest: str | os.PathLike,
    card: dict[str, Any],
) -> dict[str, Any]:
    """Copies a run's int8/float32 models, float weights and config into ``dest`` with a card.

    Args:
        run_dir: the training run folder.
        exported_dir: where ``qa-headpose export`` wrote ``headpose_{int8,float32}.tflite``.
        dest: the package's models folder.
        card: measured facts (metrics per variant, latency, data, recipe) to record.

    Returns:
        The card as written to ``dest/headpose_int8.card.json``.
    """
    run_dir, exported_dir, dest = Path(run_dir), Path(exported_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = {
        "headpose_int8.tflite": exported_dir / "headpose_int8.tflite",
        "headpose_int8.json": exported_dir / "headpose_int8.json",
        "headpose_float32.tflite": exported_dir / "headpose_float32.tflite",
        "headpose_float32.json": exported_dir / "headpose_float32.json",
        "headpose_train_config.json": run_dir / "config.json",
    }
    for name, src in files.items():
        if not src.is_file():
            raise FileNotFoundError(f"Missing {src}")
        write_bytes_atomic(dest / name, src.read_bytes())
    # Re-saved from an uncompiled model: the run's file also holds the optimizer's slots (3x the size).
    from qa_headpose.train import save_weights_atomic
    from qa_headpose.workflow import load_keras_from_run

    save_weights_atomic(load_keras_from_run(run_dir, "float"), dest / "headpose_float.weights.h5")
    files["headpose_float.weights.h5"] = dest / "headpose_float.weights.h5"
    card = {
        **card,
        "files": {name: {"bytes": (dest / name).stat().st_size, "sha256": sha256(dest / name)} for name in files},
        "angle_order": list(angles.ANGLE_ORDER),
        "units": "degrees",
        "convention": "300W-LP/AFLW2000-3D: M = Rz(roll) Ry(yaw) Rx(pitch); yaw>0 face turned to image left, "
        "pitch>0 looking up, roll>0 clockwise tilt on screen (see qa_headpose/angles.py)",
        "crop": f"face box (landmarks or detector) enlarged by {CROP_MARGIN} of its width/height per side, "
        "clipped to the image, resized to the input size",
        "input": "BGR uint8 crop; int8 input = pixel - 128 (scale 1, zero point -128)",
    }
    write_json_atomic(dest / "headpose_int8.card.json", card)
    write_bytes_atomic(dest / "MODEL_CARD.md", render_markdown(card).encode())
    shutil.rmtree(dest / "__pycache__", ignore_errors=True)
    return card


def render_markdown(card: dict[str, Any]) -> str:
    """The card as markdown."""
    rows = [
        f"| {name} | {m['yaw']:.2f} | {m['pitch']:.2f} | {m['roll']:.2f} | **{m['mean']:.2f}** | {m['count']} |"
        for name, m in card["val_mae"].items()
    ]
    sizes = [
        f"| {name} | {info['bytes'] / 1e6:.3f} MB | `{info['sha256'][:16]}…` |" for name, info in card["files"].items()
    ]
    latency = [f"| {t} | {v['p50_ms']:.3f} | {v['p90_ms']:.3f} |" for t, v in card["latency_int8_batch1"].items()]
    return "\n".join(
        [
            "# Model card: qa_headpose default head-pose model (full int8)",
            "",
            card["summary"],
            "",
            "## Data",
            card["data_statement"],
            "",
            "## Recipe",
            "```",
            card["command"],
            "```",
            card["recipe"],
            "",
            "## Validation MAE (degrees; the committed val split, |angle| <= 99)",
            "| model | yaw | pitch | roll | mean | faces |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"int8 − float gap (int8 .tflite vs float Keras, mean MAE): {card['int8_minus_float_deg']:+.3f} deg",
            "",
            f"## Latency of the int8 model, batch 1 (ms; {card['machine']})",
            "| threads | p50 | p90 |",
            "|---|---|---|",
            *latency,
            "",
            "## What it expects",
            f"- Input: {card['input']}.",
            f"- Crop: {card['crop']}.",
            f"- Output: ({', '.join(card['angle_order'])}) in {card['units']}; {card['convention']}.",
            "",
            "## Files",
            "| file | size | sha256 |",
            "|---|---|---|",
            *sizes,
            "",
            "## Limitations",
            card["limitations"],
            "",
        ]
    )
