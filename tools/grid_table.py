"""The README's model-selection table from trained run folders (val split only).

Usage: python tools/grid_table.py runs/NAME... > table.md
Each run needs `RUN/summary.json` and `RUN/models/headpose_int8.tflite` (qa-headpose export).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qa_headpose import evaluation
from qa_headpose.datasets import load
from qa_headpose.datasets.splits import split_train_val
from qa_headpose.training import modelcard


def main(runs: list[str]) -> int:
    faces, _ = load.load_filtered(["../shared/data/AFLW2000"])
    _, val = split_train_val(faces)
    print(
        "| run | input | alpha | init | aug | epochs float+QAT | int8 yaw | int8 pitch | int8 roll | **int8 mean** "
        "| float mean | int8 − float | int8 size | p50 ms 1 thr | p50 ms 2 thr |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in map(Path, runs):
        int8 = run / "models" / "headpose_int8.tflite"
        if not int8.is_file():
            print(f"skip {run}: no {int8}", file=sys.stderr)
            continue
        cfg = json.loads((run / "config.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        m, _ = evaluation.evaluate_model(int8, val)
        float_mean = summary["float"]["val"]["mean"]
        lat = {t: modelcard.time_batch1(int8, t, runs=500)["p50_ms"] for t in (1, 2)}
        model, train, qat = cfg["model"], cfg["train"], cfg["qat"]
        aug = "yes" if train["augment"]["flip"] or train["augment"]["rotate_deg"] else "no"
        init = "ImageNet" if model["backbone_weights"] else "scratch"
        print(
            f"| {run.name} | {model['input_size']} | {model['alpha']:g} | {init} | {aug} | {train['epochs']}+{qat['epochs']} "
            f"| {m['yaw']:.2f} | {m['pitch']:.2f} | {m['roll']:.2f} | **{m['mean']:.2f}** | {float_mean:.2f} "
            f"| {m['mean'] - float_mean:+.2f} | {int8.stat().st_size / 1e6:.2f} MB | {lat[1]:.3f} | {lat[2]:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
