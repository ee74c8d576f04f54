"""Models side by side on the val split and Pointing04_dev by |yaw| band, each against the first with a bootstrap.

    python tools/compare_models.py qa_headpose/models/headpose_accurate_int8.tflite runs/r6/acc_lm_export/headpose_int8.tflite

Prints a markdown table (docs/generalization.md): val MAE per angle; Pointing04_dev yaw MAE overall and at |pan|
0-30 / 30-60 / 60-75 / 75-90, pitch on |tilt| <= 30, reach (mean predicted |yaw| at pan +-90); then, for each model
after the first, the paired-bootstrap 95% interval of its difference in per-face error (val mean, Pointing'04 yaw).
Pointing04_dev is read, never trained or tuned on.

    python tools/compare_models.py --seeds 3 CONTROL_S0 CONTROL_S1 CONTROL_S2 CANDIDATE_S0 CANDIDATE_S1 CANDIDATE_S2

``--seeds K``: the models are recipes trained K times each (consecutive groups of K, the control first); adds
each recipe's runs and, against the control, the difference of their seed-averaged errors with its interval and
the spread between seeds of one recipe (`evaluation.compare.recipe_difference`): a difference smaller than the
spread can come from the seeds alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qa_headpose import evaluation
from qa_headpose.core.errors import DataError, ModelError
from qa_headpose.datasets.load import load_filtered
from qa_headpose.evaluation import bands
from qa_headpose.evaluation.compare import face_errors, paired_bootstrap, recipe_difference, seed_groups


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--aflw", default="../shared/data/AFLW2000")
    p.add_argument("--pointing04", default="../shared/data/Pointing04_dev")
    p.add_argument("--mirror", action="store_true")
    p.add_argument("--seeds", type=int, default=1, help="runs per recipe: the models in groups of this many")
    args = p.parse_args()
    try:
        seed_groups(args.models, args.seeds)
    except ValueError:
        p.error(f"--seeds {args.seeds}: the {len(args.models)} models do not fall into groups of {args.seeds}")
    try:
        compare(args)
    except (DataError, ModelError, OSError) as e:
        p.error(str(e))


def compare(args: argparse.Namespace) -> None:
    """Print the table and the intervals (main's arguments)."""
    val = evaluation.select_faces(load_filtered([args.aflw])[0], "val", "aflw2000_val")
    p04, _ = load_filtered([args.pointing04], unlabelled_ok=True)
    print(
        "| model | val yaw / pitch / roll | val mean | P04 yaw | 0-30 | 30-60 | 60-75 | 75-90 | P04 pitch (tilt<=30) | reach at 90 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    errors = []
    for model in args.models:
        mv, pv = evaluation.evaluate_model(model, val, mirror=args.mirror)
        _, pp = evaluation.evaluate_model(model, p04, mirror=args.mirror)
        r = bands.report(pp, p04.poses)
        by = {b["band"]: b["yaw"] for b in r["bands"]}
        print(
            f"| {model} | {mv['yaw']:.2f} / {mv['pitch']:.2f} / {mv['roll']:.2f} | {mv['mean']:.2f} | {r['yaw']:.2f} | "
            + " | ".join(f"{by.get(k, float('nan')):.2f}" for k in ("0-30", "30-60", "60-75", "75-90"))
            + f" | {r['pitch_moderate']:.2f} | {r['reach']['mean_pred_abs_yaw']:.1f} |"
        )
        errors.append((face_errors(pv, val.poses), np.abs(pp[:, 0] - p04.poses[:, 0])))
    for model, (ev, ep) in zip(args.models[1:], errors[1:]):
        v, y = paired_bootstrap(errors[0][0], ev), paired_bootstrap(errors[0][1], ep)
        print(
            f"{model} - {args.models[0]}: val mean {v['difference']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}], "
            f"P04 yaw {y['difference']:+.2f} [{y['low']:+.2f}, {y['high']:+.2f}] (95% paired bootstrap)"
        )
    if args.seeds > 1:
        _compare_recipes(seed_groups(list(args.models), args.seeds), seed_groups(errors, args.seeds))


def _compare_recipes(recipes: list[list[Path]], errors: list[list[tuple]]) -> None:
    """Each recipe against the first over its seeds: seed-averaged difference, interval and seed spread."""
    control = errors[0]
    for models, runs in zip(recipes[1:], errors[1:]):
        v = recipe_difference([e[0] for e in control], [e[0] for e in runs])
        y = recipe_difference([e[1] for e in control], [e[1] for e in runs])
        print(
            f"recipe {models[0]} ({len(models)} seeds) - {recipes[0][0]}: "
            f"val mean {v['difference']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}], seed spread {v['seed_spread']:.3f}; "
            f"P04 yaw {y['difference']:+.2f} [{y['low']:+.2f}, {y['high']:+.2f}], seed spread {y['seed_spread']:.2f}"
        )


if __name__ == "__main__":
    main()
