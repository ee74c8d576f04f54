"""The shipped model's card: what it was trained on, how well it does, what it expects."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.atomic import write_bytes, write_json
from qa_headpose.inference.preprocess import CROP_MARGIN


def time_batch1(model_path: str | os.PathLike, threads: int, runs: int = 300, warmup: int = 20) -> dict[str, float]:
    """p50/p90 latency (ms) of one batch-1 interpreter call (quantize + invoke + dequantize)."""
    from qa_headpose.inference.runtime import TFLiteRunner

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


def sample_inputs() -> tuple[np.ndarray, np.ndarray]:
    """The shipped sample photo as a 420x420 face crop and as a 640x480 frame (one face)."""
    import cv2

    from qa_headpose.inference.registry import SAMPLE_IMAGE

    image = cv2.imread(str(SAMPLE_IMAGE))
    crop = cv2.resize(image[40:360, 120:440], (420, 420), interpolation=cv2.INTER_CUBIC)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = cv2.resize(image, (480, 480), interpolation=cv2.INTER_AREA)
    return crop, frame


def time_end_to_end(
    model_path: str | os.PathLike, threads: int, runs: int = 200, warmup: int = 20, mirror: bool = False
) -> dict:
    """p50/p90 (ms) of ``predict`` on a 420-px crop and of ``predict_image`` on a 640x480 frame (``mirror``: with
    test-time mirroring)."""
    from qa_headpose.inference.estimator import HeadPoseEstimator

    estimator = HeadPoseEstimator(model_path, num_threads=threads, mirror=mirror)
    crop, frame = sample_inputs()
    out = {}
    for what, call in (
        ("predict, 420-px crop", lambda: estimator.predict(crop)),
        ("predict_image, 640x480 frame", lambda: estimator.predict_image(frame)),
    ):
        for _ in range(warmup):
            call()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
        out[what] = {"p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90))}
    return out


def soup_record(weights: str | os.PathLike) -> Path:
    """Where tools/average_weights.py records what an averaged weights file averages: ``<name>.soup.json``."""
    weights = Path(weights)
    return weights.with_name(weights.name + ".soup.json")


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ship(
    run_dir: str | os.PathLike,
    exported_dir: str | os.PathLike,
    name: str,
    models_dir: str | os.PathLike,
    weights_dir: str | os.PathLike,
    card: dict[str, Any],
) -> dict[str, Any]:
    """Ships a run as the named model: the int8 model and its card into the package, float files beside the repo.

    The package (what the wheel carries) gets ``headpose_<name>_int8.tflite``, its
    ``.json`` and the card (``headpose_<name>.card.json``, ``MODEL_CARD_<name>.md``);
    ``weights_dir/<name>/`` gets what only training and the float comparison use: the
    float Keras weights, the float32 .tflite and the run's config.

    Args:
        run_dir: the training run folder.
        exported_dir: where ``qa-headpose export`` wrote ``headpose_{int8,float32}.tflite``.
        name: the model's name ("accurate", "fast").
        models_dir: the package's models folder; weights_dir: the repository's weights folder.
        card: measured facts (metrics per variant, latency, data, recipe) to record.

    Returns:
        The card as written.
    """
    run_dir, exported_dir, models_dir = Path(run_dir), Path(exported_dir), Path(models_dir)
    float_dir = Path(weights_dir) / name
    models_dir.mkdir(parents=True, exist_ok=True)
    float_dir.mkdir(parents=True, exist_ok=True)
    files = {
        models_dir / f"headpose_{name}_int8.tflite": exported_dir / "headpose_int8.tflite",
        models_dir / f"headpose_{name}_int8.json": exported_dir / "headpose_int8.json",
        float_dir / "headpose_float32.tflite": exported_dir / "headpose_float32.tflite",
        float_dir / "headpose_float32.json": exported_dir / "headpose_float32.json",
        float_dir / "headpose_train_config.json": run_dir / "config.json",
    }
    for dest, src in files.items():
        if not src.is_file():
            raise FileNotFoundError(f"Missing {src}")
        write_bytes(dest, src.read_bytes())
    # Re-saved from an uncompiled model: the run's file also holds the optimizer's slots (3x the size).
    from qa_headpose.training.train import save_weights_atomic
    from qa_headpose.training.workflow import load_keras_from_run

    weights = float_dir / "headpose_float.weights.h5"
    save_weights_atomic(load_keras_from_run(run_dir, "float"), weights)
    repo = models_dir.parents[1]
    shown = [*files, weights]
    card = {
        **card,
        "name": name,
        "files": {_relative(path, repo): {"bytes": path.stat().st_size, "sha256": sha256(path)} for path in shown},
        "angle_order": list(angles.ANGLE_ORDER),
        "units": "degrees",
        "convention": "300W-LP/AFLW2000-3D: M = Rz(roll) Ry(yaw) Rx(pitch); yaw>0 face turned to image left, "
        "pitch>0 looking up, roll>0 clockwise tilt on screen (see qa_headpose/core/angles.py)",
        "crop": f"face box (landmarks or detector) enlarged by {CROP_MARGIN} of its width/height per side, "
        "clipped to the image, resized to the input size",
        "input": "BGR uint8 crop; int8 input = pixel - 128 (scale 1, zero point -128)",
    }
    write_json(models_dir / f"headpose_{name}.card.json", card)
    write_bytes(models_dir / f"MODEL_CARD_{name}.md", render_markdown(card).encode())
    shutil.rmtree(models_dir / "__pycache__", ignore_errors=True)
    return card


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def pointing04_section(report: dict[str, Any] | None) -> list[str]:
    """The card's rows for another capture: Pointing04_dev yaw by |pan| band, pitch, reach (`bands.report`)."""
    if not report:
        return []
    rows = [
        f"| {b['band']} | {b['count']} | {b['yaw']:.2f} | {b['mean_true_abs_yaw']:.1f} | {b['mean_pred_abs_yaw']:.1f} |"
        for b in report["bands"]
    ]
    return [
        "## Another capture: Pointing04_dev (5 people, studio; read, never trained or tuned on)",
        f"Yaw MAE {report['yaw']:.2f}, pitch MAE on |tilt| <= 30 {report['pitch_moderate']:.2f} "
        f"({report['count']} photos; labels are the marker directions, larger than the head's turn at large pan: "
        f"see docs/generalization.md). Reach: pan ±{report['reach']['labelled_abs_yaw']:g} read as "
        f"{report['reach']['mean_pred_abs_yaw']:.1f} on average.",
        "",
        "| band of abs(pan) | photos | yaw MAE | mean abs(pan) | mean predicted abs(yaw), signed by pan |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def pointing04_report(model_path: str | os.PathLike, folder: str | os.PathLike) -> dict[str, Any]:
    """`bands.report` of a model on a Pointing'04 folder (the card's section for another capture)."""
    from qa_headpose import evaluation
    from qa_headpose.datasets.load import load_filtered
    from qa_headpose.evaluation import bands

    faces, _ = load_filtered([folder], unlabelled_ok=True)
    _, pred = evaluation.evaluate_model(model_path, faces)
    return bands.report(pred, faces.poses)


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
    end_to_end = [
        f"| {what} | {t} | {v['p50_ms']:.3f} | {v['p90_ms']:.3f} |"
        for what, per_thread in card.get("latency_end_to_end", {}).items()
        for t, v in per_thread.items()
    ]
    return "\n".join(
        [
            f"# Model card: qa_headpose `{card.get('name', 'default')}` head-pose model (full int8)",
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
            *pointing04_section(card.get("pointing04_dev")),
            f"## Latency of the int8 model, batch 1 (ms; {card['machine']})",
            "| threads | p50 | p90 |",
            "|---|---|---|",
            *latency,
            "",
            *(
                [
                    "## Latency end to end (ms, p50/p90)",
                    "| what | threads | p50 | p90 |",
                    "|---|---|---|---|",
                    *end_to_end,
                    "",
                ]
                if end_to_end
                else []
            ),
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
