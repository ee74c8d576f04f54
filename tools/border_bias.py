"""How much black bands at a crop's sides move a model's angles, on the committed val split.

Usage: python tools/border_bias.py MODEL.tflite [MODEL.tflite ...] [--data ../shared/data/AFLW2000]

AFLW_extra's crops reach past their 120x120 jpg and are padded black (about 12% of the side
on each side); a teacher that reads the bands as pose writes that error into every
pseudo-label. For each model this prints the signed mean error (yaw, pitch, roll) and the
MAE on the val crops as they are and with a black band of 7.5% and 11.5% of the side on each
side (what is left: 85% and 77% of the side, about AFLW_extra's average).
"""

from __future__ import annotations

import argparse

import numpy as np

from qa_headpose.datasets import load
from qa_headpose.datasets.splits import split_train_val
from qa_headpose.inference.runtime import TFLiteRunner
from qa_headpose.training.augment import blacken_sides

KEPT = (1.0, 0.85, 0.77)


def banded(crops: np.ndarray, kept: float) -> np.ndarray:
    """The crops with the same black band on every side, leaving the centre ``kept`` of the side."""
    band = int(round(crops.shape[1] * (1 - kept) / 2))
    return blacken_sides(crops, band, band, band, band)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--data", default="../shared/data/AFLW2000")
    args = p.parse_args()
    faces, _ = load.load_filtered([args.data])
    _, val = split_train_val(faces)
    print("model | side kept | signed error yaw / pitch / roll | MAE yaw / pitch / roll | mean")
    for path in args.models:
        runner = TFLiteRunner(path, num_threads=2)
        crops = val.crops(runner.input_size).astype(np.float32)
        for kept in KEPT:
            error = runner(banded(crops, kept)) - val.poses
            signed, mae = error.mean(0), np.abs(error).mean(0)
            print(
                f"{path} | {kept:.2f} | {' / '.join(f'{v:+.2f}' for v in signed)} | "
                f"{' / '.join(f'{v:.2f}' for v in mae)} | {mae.mean():.2f}"
            )


if __name__ == "__main__":
    main()
