"""WHENet alone, a teacher alone, and the teacher with WHENet's yaw blended in, by |yaw| band, on labelled faces.

Usage: python tools/measure_whenet.py --data ../shared/data/AFLW2000 --subset val [--teacher MODEL.tflite ...]

Faces are read as `qa-headpose evaluate` reads them (the |angle| <= 99 filter, NaN angles not scored; the
val split is qa_headpose/splits/aflw2000_val.txt) and scored with the same band report
(`evaluation.bands`). WHENet sees each face through `whenet_teacher.whenet_box` of the same landmark box;
the teachers (.tflite, each with its mirror, averaged as `data pseudo-label` does) see the package's crop.
The blend is `whenet_labels.blend_yaw` at ``--threshold``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qa_headpose.datasets.aflw_extra import is_aflw_extra_folder
from qa_headpose.datasets.load import load_filtered
from qa_headpose.evaluation import bands
from qa_headpose.evaluation.models import select_faces
from qa_headpose.training.whenet_labels import DEFAULT_THRESHOLD_DEG, blend_yaw
from qa_headpose.training.whenet_teacher import WHENet


def show(label: str, pred: np.ndarray, true: np.ndarray) -> None:
    summary = bands.report(pred, true)
    print(f"\n{label}: MAE yaw {summary['yaw']:.2f}  pitch {summary['pitch']:.2f}  roll {summary['roll']:.2f}  "
          f"mean {summary['mean']:.2f}  (n={summary['count']}); pitch at |pitch| <= 30: {summary['pitch_moderate']:.2f}; "
          f"reach: labelled |yaw| {summary['reach']['labelled_abs_yaw']:g} -> predicted "
          f"{summary['reach']['mean_pred_abs_yaw']:.1f}")  # fmt: skip
    print(bands.format_bands(summary["bands"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/AFLW2000")
    p.add_argument("--subset", choices=("all", "train", "val"), default="all")
    p.add_argument("--teacher", nargs="*", default=[], help=".tflite models, averaged, each with its mirror")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_DEG)
    args = p.parse_args()
    if is_aflw_extra_folder(args.data):
        raise SystemExit("AFLW_extra is measured by `qa-headpose data whenet-labels` (its record), not here")
    faces, _ = load_filtered([args.data], unlabelled_ok=True)
    faces = select_faces(faces, args.subset, "aflw2000_val" if args.subset != "all" else None)
    start = time.perf_counter()
    whenet = WHENet()(faces.images, faces.boxes)
    print(f"WHENet: {len(faces)} faces in {time.perf_counter() - start:.1f} s")
    show("WHENet alone", whenet, faces.poses)
    if not args.teacher:
        return
    from qa_headpose.datasets.pseudo_label import teacher_predict
    from qa_headpose.inference.runtime import TFLiteRunner

    runners = [TFLiteRunner(t) for t in args.teacher]
    x = {r.input_size: faces.crops(r.input_size).astype(np.float32) for r in runners}
    teacher = teacher_predict(runners, x)["pose"]
    show("teacher", teacher, faces.poses)
    blended = teacher.copy()
    blended[:, 0], changed = blend_yaw(teacher[:, 0], whenet[:, 0], args.threshold)
    show(f"teacher, yaw blended with WHENet's where |WHENet yaw| > {args.threshold:g} ({changed.sum()} faces)",
         blended, faces.poses)  # fmt: skip


if __name__ == "__main__":
    main()
