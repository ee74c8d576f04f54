"""Measure a trained run on the val split and ship it as one of the package's named models.

Usage (from the repository root, after `qa-headpose train --preset NAME --out RUN` and
`qa-headpose export RUN --out RUN/models`):

    python tools/ship_model.py RUN RUN/models --name accurate --command "qa-headpose train --preset accurate ..."

The int8 model and its card go to qa_headpose/models/ (what the wheel carries); the float
weights, the float32 .tflite and the run's config go to weights/NAME/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from qa_headpose import evaluation
from qa_headpose.datasets import load
from qa_headpose.datasets.pseudo_label import teacher_record
from qa_headpose.datasets.splits import split_train_val
from qa_headpose.training import modelcard

REPO = Path(__file__).resolve().parents[1]


def describe_data(run_cfg: dict) -> str:
    """The card's data statement, from what the run's config says it trained on."""
    text = (
        "Labelled faces: the train split (faces not in qa_headpose/splits/aflw2000_val.txt) of 1,405 AFLW2000-3D "
        "images (Zhu et al. 2016; images from AFLW, Koestinger et al. 2011), |angle| <= 99 degrees. "
    )
    extra = run_cfg["data"].get("extra")
    if extra:
        text += (
            f"Extra faces: {extra['used']} of the 18,606 AFLW_extra faces (other AFLW photographs, none of AFLW2000-3D) "
            f"with {extra['labels']} labels ({extra['config']}); the labelled faces repeated "
            f"{extra['labelled_repeat']}x per epoch. "
        )
        provenance = teacher_record(extra["config"].get("pseudo_labels") or "none")
        if provenance.is_file():
            teacher = json.loads(provenance.read_text())["teacher"]
            text += "Pseudo-label teacher (each model on the crop and its mirror, averaged): "
            text += ", ".join(f"{t['path']} (sha256 {t['sha256'][:12]})" for t in teacher) + ". "
    history = ancestry(run_cfg["train"].get("init_weights"))
    if history:
        text += "Its start weights and theirs, back to the first model: " + " <- ".join(history) + ". "
    return text + (
        "Non-commercial research terms apply to that data, and so to this model's provenance. No 300W-LP "
        "training set was available. The val split chose every weight and recipe; Pointing04_dev (another "
        "capture, read, never trained or tuned on) also decided which candidate ships."
    )


def ancestry(init_weights: str | None, limit: int = 10) -> list[str]:
    """What each start-weights file in a chain learned from, read from the training config beside it.

    The committed convention: ``X_float.weights.h5`` (or ``headpose_float.weights.h5``) sits beside
    ``X_train_config.json`` (``headpose_train_config.json``); an averaged file (tools/average_weights.py)
    sits beside ``<file>.soup.json`` and the chain goes on through its last parent. The chain ends at weights
    without a config or a run that started from ImageNet or nothing.
    """
    steps = []
    while init_weights and len(steps) < limit:
        weights = REPO / init_weights
        soup = modelcard.soup_record(weights)
        if soup.is_file():
            parents = json.loads(soup.read_text())["parents"]
            steps.append(
                f"{init_weights} (the weight average of "
                + " and ".join(f"{p['share']:g} x {p['weights']}" for p in parents)
                + ")"
            )
            init_weights = parents[-1]["weights"]  # the chain goes on through the last parent
            continue
        config = weights.with_name(weights.name.replace("float.weights.h5", "train_config.json"))
        if not config.is_file():
            steps.append(
                f"{init_weights} ({'no training config beside it' if weights.is_file() else 'not in this checkout'})"
            )
            break
        cfg = json.loads(config.read_text())
        extra = cfg["data"].get("extra")
        seen = f"{cfg['data']['train_faces']} train faces"
        if extra:
            seen += f" ({extra['used']} AFLW_extra faces with {extra['labels']} labels {extra['config'].get('pseudo_labels')})"
        start = cfg["train"].get("init_weights")
        origin = "" if start else f", from {cfg['model'].get('backbone_weights') or 'random'} weights"
        steps.append(f"{init_weights} ({cfg['train']['epochs']} + {cfg['qat']['epochs']} epochs on {seen}{origin})")
        init_weights = start
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("exported", type=Path)
    parser.add_argument("--name", required=True, choices=("accurate", "fast"))
    parser.add_argument("--data", default="../shared/data/AFLW2000")
    parser.add_argument("--pointing04", default="../shared/data/Pointing04_dev", help="another capture, read only")
    parser.add_argument("--command", required=True, help="the command that reproduces the run")
    args = parser.parse_args()

    faces, _ = load.load_filtered([args.data])
    _, val = split_train_val(faces)
    metrics = {}
    for label, model, phase in [
        ("float Keras", args.run, "float"),
        ("QAT Keras", args.run, "qat"),
        ("float32 .tflite", args.exported / "headpose_float32.tflite", None),
        ("full-int8 .tflite (shipped)", args.exported / "headpose_int8.tflite", None),
    ]:
        if phase is None and not Path(model).is_file():
            continue
        metrics[label], _ = evaluation.evaluate_model(model, val, phase or "qat")
        print(label, json.dumps(metrics[label]))
    int8 = args.exported / "headpose_int8.tflite"
    pointing04 = modelcard.pointing04_report(int8, args.pointing04) if Path(args.pointing04).is_dir() else None
    latency = {t: modelcard.time_batch1(int8, t) for t in (1, 2)}
    end_to_end = {}
    for t in (1, 2):
        for what, value in modelcard.time_end_to_end(int8, t).items():
            end_to_end.setdefault(what, {})[t] = value
    run_cfg = json.loads((args.run / "config.json").read_text())
    summary = json.loads((args.run / "summary.json").read_text())
    model, train, qat = run_cfg["model"], run_cfg["train"], run_cfg["qat"]
    start = f"the float weights {train['init_weights']}" if train.get("init_weights") else model["backbone_weights"]
    card = {
        "summary": (
            f"MobileNetV2 (alpha {model['alpha']:g}, {model['input_size']}x{model['input_size']} BGR input), "
            "trained float then quantization-aware (tfmot), exported to a full-int8 TFLite model "
            "(int8 input, int8 output, every op int8)."
        ),
        "data_statement": describe_data(run_cfg),
        "command": args.command,
        "recipe": (
            f"start: {start}; float: {train['epochs']} epochs, AdamW lr {train['learning_rate']:g} (warm-up + cosine), "
            f"MAE loss on degrees, batch {train['batch_size']}; QAT: {qat['epochs']} epochs at lr "
            f"{qat['learning_rate']:g}; augmentation (train faces only, the student's noise): {train['augment']}. "
            f"Training time on this machine (2 CPU cores, shared with other jobs): float {summary['float']['seconds']:.0f} s, "
            f"QAT {summary['qat']['seconds']:.0f} s."
        ),
        "val_mae": metrics,
        "int8_minus_float_deg": metrics["full-int8 .tflite (shipped)"]["mean"] - metrics["float Keras"]["mean"],
        "pointing04_dev": pointing04,
        "latency_int8_batch1": latency,
        "latency_end_to_end": end_to_end,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, ai_edge_litert",
        "limitations": (
            "Labelled data is ~1.2k faces of one dataset (AFLW2000-3D), the rest are a teacher's labels: expect "
            "larger errors on other captures (video, IR, strong lighting), on extreme poses (|yaw| > 80) and on "
            "faces whose crop differs from the training crop. Labels in AFLW2000-3D are fitted, not measured, and "
            "pitch is the noisiest. Research use only, because of the training data's terms."
        ),
    }
    card = modelcard.ship(args.run, args.exported, args.name, REPO / "qa_headpose" / "models", REPO / "weights", card)
    print(f"shipped {args.name}; int8 - float = {card['int8_minus_float_deg']:+.3f} deg; latency {latency}")
    print(json.dumps(end_to_end))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
