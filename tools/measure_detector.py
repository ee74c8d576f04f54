"""Measures the face detector on AFLW2000: detection rate by |yaw| band, speed, and the box fit.

    PYTHONPATH=. python tools/measure_detector.py rate ../shared/data/AFLW2000 [--detector full]
    PYTHONPATH=. python tools/measure_detector.py fit ../shared/data/AFLW2000 [--detector full]

``rate`` prints the detection rate by |yaw| band and the speed (docs/detection.md);
``fit`` prints the detector's entry of `detect.BOX_MAPPINGS`.

A face counts as found when a detection's box holds the centre of its landmark box
(`detect.match_detection`). ``fit`` uses the train split only (names not in
``qa_headpose/splits/aflw2000_val.txt``) and faces with |angles| <= 99.
Reading the .mat labels needs scipy (the ``[train]`` extra).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from qa_headpose.core import angles
from qa_headpose.datasets.mat import read_mat_label
from qa_headpose.datasets.splits import read_split
from qa_headpose.inference.detect import FaceDetector, box_iou, fit_box_mapping, match_detection
from qa_headpose.inference.images import read_image

BANDS = (0, 15, 30, 45, 60, 75, 90, 99, 1e9)


def _detect_all(folder: Path, detector: FaceDetector) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jpg")):
        if not path.with_suffix(".mat").is_file():
            continue
        pose, box = read_mat_label(path.with_suffix(".mat"))
        image = read_image(path)
        t0 = time.perf_counter()
        dets = detector.detect(image)
        ms = (time.perf_counter() - t0) * 1e3
        i = match_detection(dets, box)
        rows.append(
            {
                "name": path.stem,
                "pose": pose,
                "box": box,
                "det": None if i is None else np.array(dets[i].box),
                "n_det": len(dets),
                "ms": ms,
            }
        )
    return rows


def _rate(rows: list[dict], detector: FaceDetector) -> None:
    yaw = np.abs([r["pose"][0] for r in rows])
    found = np.array([r["det"] is not None for r in rows])
    in_protocol = angles.within_limit(np.array([r["pose"] for r in rows]))
    print("| |yaw| band (deg) | faces | found | rate |")
    print("|---|---:|---:|---:|")
    for lo, hi in zip(BANDS[:-1], BANDS[1:]):
        m = (yaw >= lo) & (yaw < hi)
        if m.any():
            label = f"{lo}-{hi}" if hi < 1e9 else f">= {lo}"
            print(f"| {label} | {m.sum()} | {found[m].sum()} | {100 * found[m].mean():.1f}% |")
    for label, m in (("all (|angles| <= 99)", in_protocol), ("all files", np.ones_like(found))):
        print(f"| **{label}** | {m.sum()} | {found[m].sum()} | **{100 * found[m].mean():.1f}%** |")
    ious = [box_iou(r["det"], r["box"][None])[0] for r in rows if r["det"] is not None]
    extra = sum(max(0, r["n_det"] - (r["det"] is not None)) for r in rows)
    ms = np.array([r["ms"] for r in rows])
    print(f"\nIoU(detector box, landmark box) of found faces: median {np.median(ious):.2f}")
    print(f"detections not matching the labelled face (other faces or false positives): {extra}")
    p50, p90 = np.percentile(ms, [50, 90])
    print(
        f"detect() per 450x450 image, {detector.name}, {detector.num_threads} thread(s): p50 {p50:.2f} p90 {p90:.2f} ms"
    )


def _fit(rows: list[dict], detector: FaceDetector) -> None:
    val = read_split("aflw2000_val")
    train = [
        r for r in rows if r["name"] not in val and r["det"] is not None and angles.within_limit(r["pose"][None])[0]
    ]
    det = np.array([r["det"] for r in train])
    lm = np.array([r["box"] for r in train])
    shift_x, shift_y, scale_x, scale_y = fit_box_mapping(det, lm)
    print(f"train faces found: {len(train)}")
    print(f'BOX_MAPPINGS["{detector.name}"] = ({shift_x:.4f}, {shift_y:.4f}, {scale_x:.4f}, {scale_y:.4f})')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("rate", "fit"))
    parser.add_argument("folder", type=Path, help="the AFLW2000 folder (images with .mat labels)")
    parser.add_argument("--detector", default="short", help="shipped detector name (short, full) or a .tflite")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    detector = FaceDetector(args.detector, num_threads=args.threads)
    rows = _detect_all(args.folder, detector)
    _rate(rows, detector) if args.what == "rate" else _fit(rows, detector)


if __name__ == "__main__":
    main()
