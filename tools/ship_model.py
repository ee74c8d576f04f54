"""Measure a trained run on the val split and ship it as the package's default model.

Usage: python tools/ship_model.py RUN_DIR EXPORTED_DIR [--data ../shared/data/AFLW2000]
(after `qa-headpose train ... --out RUN_DIR` and `qa-headpose export RUN_DIR --out EXPORTED_DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from qa_headpose import modelcard, workflow
from qa_headpose.data import split_train_val


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("exported", type=Path)
    parser.add_argument("--data", default="../shared/data/AFLW2000")
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "qa_headpose" / "models")
    parser.add_argument("--command", required=True, help="the command that reproduces the run")
    args = parser.parse_args()

    faces, _ = workflow.load_filtered([args.data])
    _, val = split_train_val(faces)
    metrics = {}
    for label, model, phase in [
        ("float Keras", args.run, "float"),
        ("QAT Keras", args.run, "qat"),
        ("float32 .tflite", args.exported / "headpose_float32.tflite", None),
        ("dynamic-range .tflite", args.exported / "headpose_dynamic.tflite", None),
        ("full-int8 .tflite (shipped)", args.exported / "headpose_int8.tflite", None),
    ]:
        if phase is None and not Path(model).is_file():
            continue
        metrics[label], _ = workflow.evaluate_model(model, val, phase or "qat")
        print(label, json.dumps(metrics[label]))
    int8 = args.exported / "headpose_int8.tflite"
    latency = {t: modelcard.time_batch1(int8, t) for t in (1, 2)}
    run_cfg = workflow.read_run_config(args.run)
    summary = json.loads((args.run / "summary.json").read_text())
    card = {
        "summary": (
            f"MobileNetV2 (alpha {run_cfg['model'].alpha:g}, {run_cfg['model'].input_size}x"
            f"{run_cfg['model'].input_size} BGR input), trained float then quantization-aware (tfmot), exported "
            "to a full-int8 TFLite model (int8 input, int8 output, every op int8)."
        ),
        "data_statement": (
            "Trained on the train split (faces not in qa_headpose/splits/aflw2000_val.txt) of 1,405 AFLW2000-3D "
            "images (Zhu et al. 2016; images from AFLW, Koestinger et al. 2011), |angle| <= 99 degrees. "
            "Non-commercial research terms apply to that data, and so to this model's provenance. No 300W-LP "
            "training set was available; the backbone starts from torchvision's ImageNet MobileNetV2 weights "
            "(ported offline). The val split was the only data used for early stopping and model choice."
        ),
        "command": args.command,
        "recipe": (
            f"float: {run_cfg['train'].epochs} epochs, AdamW lr {run_cfg['train'].learning_rate:g} (warm-up + cosine), "
            f"MAE loss on degrees, batch {run_cfg['train'].batch_size}; QAT: {run_cfg['qat'].epochs} epochs at lr "
            f"{run_cfg['qat'].learning_rate:g}; augmentation (train split only): {run_cfg['train'].augment}. "
            f"Training time on this machine (2 CPU cores): float {summary['float']['seconds']:.0f} s, "
            f"QAT {summary['qat']['seconds']:.0f} s."
        ),
        "val_mae": metrics,
        "int8_minus_float_deg": metrics["full-int8 .tflite (shipped)"]["mean"] - metrics["float Keras"]["mean"],
        "latency_int8_batch1": latency,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, ai_edge_litert",
        "limitations": (
            "Trained on ~1.2k faces of one dataset (AFLW2000-3D): expect larger errors on other captures "
            "(video, IR, strong lighting), on extreme poses (|yaw| > 80) and on faces whose crop differs from "
            "the training crop. Labels in AFLW2000-3D are fitted, not measured, and pitch is the noisiest. "
            "Research use only, because of the training data's terms."
        ),
    }
    modelcard.ship(args.run, args.exported, args.dest, card)
    print(f"shipped to {args.dest}; int8 - float = {card['int8_minus_float_deg']:+.3f} deg; latency {latency}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
