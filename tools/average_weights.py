"""Average the float weights of several runs of one recipe (a "model soup") and score each and the average on val.

Usage: python tools/average_weights.py RUN [RUN ...] [--weights W.h5 ...] --out SOUP.weights.h5
       [--shares S S ...] [--data ../shared/data/AFLW2000]

Runs that start from the same weights and differ only in their seed stay in one basin, so the mean of
their weights (batch-norm statistics included) is a model of its own, often as good as the best of them
without picking one by its val score. RUN folders give their float phase's best weights and the model
config; ``--weights`` adds float .h5 files of the same model (e.g. weights/accurate/headpose_float.weights.h5).
``--shares`` weighs the models (the runs first, then ``--weights``; they sum to 1): between a model and the
same model fine-tuned on other data, it moves along the line between them (WiSE-FT: interpolating a
model and its fine-tuned self often keeps what each is good at, under distribution shift).
Beside the result, ``<out>.soup.json`` names the models and their shares (tools/ship_model.py reads it for a
model card's ancestry).
Quantize the result with ``qa-headpose train --preset ... --epochs 0 --init-weights SOUP.weights.h5``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from qa_headpose.cli.common import format_mae
from qa_headpose.core.angles import mean_absolute_errors
from qa_headpose.core.atomic import write_json
from qa_headpose.training import workflow
from qa_headpose.training.model import build_model
from qa_headpose.training.modelcard import soup_record
from qa_headpose.training.train import predict_keras, save_weights_atomic


def mean_weights(weight_lists: list[list[np.ndarray]], shares: list[float] | None = None) -> list[np.ndarray]:
    """Element-wise mean of several models' ``get_weights()`` (same architecture), weighted by ``shares``."""
    shapes = [[w.shape for w in weights] for weights in weight_lists]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("the models differ in architecture: their weights cannot be averaged")
    shares = checked_shares(shares, len(weight_lists))
    return [np.tensordot(np.asarray(shares), np.stack(layer), axes=1) for layer in zip(*weight_lists)]


def checked_shares(shares: list[float] | None, models: int) -> list[float]:
    """``shares``, or equal shares when None; refuses anything but one share >= 0 per model, summing to 1."""
    if shares is None:
        return [1 / models] * models
    if len(shares) != models or min(shares) < 0 or not np.isclose(sum(shares), 1.0):
        raise ValueError(f"Expected one share >= 0 per model, summing to 1. Received: {shares}")
    return shares


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--weights", nargs="*", default=[], type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--shares", nargs="+", type=float, help="one weight per model (runs, then --weights); sum 1")
    p.add_argument("--data", default="../shared/data/AFLW2000")
    args = p.parse_args()
    configs = [workflow.read_run_config(run)["model"] for run in args.runs]
    if any(c != configs[0] for c in configs):
        raise SystemExit("average_weights: the runs have different model configs")
    paths = [run / "float" / "best.weights.h5" for run in args.runs] + list(args.weights)
    try:  # before the data is read
        shares = checked_shares(args.shares, len(paths))
    except ValueError:
        raise SystemExit(f"average_weights: --shares needs {len(paths)} numbers >= 0 summing to 1") from None
    prepared = workflow.prepare_data([args.data])
    x, y = prepared.val.crops(configs[0].input_size).astype(np.float32), prepared.val.poses
    model = build_model(dataclasses.replace(configs[0], backbone_weights=None))
    weights = []
    for path in paths:
        model.load_weights(str(path))
        print(format_mae(f"{path} float val", mean_absolute_errors(predict_keras(model, x), y)))
        weights.append(model.get_weights())
    model.set_weights(mean_weights(weights, shares))
    val = mean_absolute_errors(predict_keras(model, x), y)
    print(format_mae(f"average of {len(paths)} float val", val))
    save_weights_atomic(model, args.out)
    record = {"parents": [{"weights": str(path), "share": share} for path, share in zip(paths, shares)]}
    write_json(soup_record(args.out), {**record, "float_val_mae": {k: float(v) for k, v in val.items()}})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
