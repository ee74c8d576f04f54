"""Pose MAE on the AFLW2000 val split with landmark crops vs detector crops (for README / docs/detection.md).

    PYTHONPATH=. python tools/measure_detector_crops.py ../shared/data/AFLW2000 [--model M.tflite]

Val faces: names in ``qa_headpose/splits/aflw2000_val.txt`` with |angles| <= 99. Three crops
of each face go through the same model: the landmark box (what the model was trained
on), the detector box mapped by `FaceDetector.crop_box` (what ``predict``
does), and the raw detector box, each grown by the training margin
(`preprocess.crop_face`). MAE is over the faces the detector found (paired); the
landmark-crop MAE over all val faces is printed too. Reading .mat labels needs scipy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qa_headpose.core import angles
from qa_headpose.datasets.mat import read_mat_label
from qa_headpose.datasets.splits import read_split
from qa_headpose.inference.detect import FaceDetector, match_detection
from qa_headpose.inference.estimator import HeadPoseEstimator
from qa_headpose.inference.images import read_image
from qa_headpose.inference.preprocess import crop_face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the AFLW2000 folder (images with .mat labels)")
    parser.add_argument(
        "--model", help="head-pose .tflite (default: the shipped qa_headpose/models/headpose_int8.tflite)"
    )
    parser.add_argument("--detector", default="short", help="shipped detector name (short, full) or a .tflite")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    estimator = HeadPoseEstimator(args.model, num_threads=args.threads)
    detector = FaceDetector(args.detector, num_threads=args.threads)
    size = estimator.input_size
    val = read_split("aflw2000_val")
    labels, crops = [], {"landmark": [], "detector (mapped)": [], "detector (raw box)": []}
    found = []
    for path in sorted(args.folder.glob("*.jpg")):
        if path.stem not in val or not path.with_suffix(".mat").is_file():
            continue
        pose, box = read_mat_label(path.with_suffix(".mat"))
        if not angles.within_limit(pose[None])[0]:
            continue
        image = read_image(path)
        dets = detector.detect(image)
        i = match_detection(dets, box)
        labels.append(pose)
        found.append(i is not None)
        crops["landmark"].append(crop_face(image, box, size))
        det_box = dets[i].box if i is not None else box
        crops["detector (mapped)"].append(crop_face(image, detector.crop_box(det_box), size))
        crops["detector (raw box)"].append(crop_face(image, np.asarray(det_box), size))
    labels, found = np.array(labels), np.array(found)
    model = args.model or "shipped headpose_int8.tflite"
    print(f"model {model}, input {size}; detector {detector.name}; val faces {len(labels)}, found {found.sum()}")
    print("| crop | faces | MAE yaw | MAE pitch | MAE roll | MAE mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, items in crops.items():
        pred = np.array([p.as_array() for p in estimator.predict_batch(np.stack(items))])
        subsets = [("found", found)] + ([("all", np.ones_like(found))] if name == "landmark" else [])
        for subset, mask in subsets:
            m = angles.mean_absolute_errors(pred[mask], labels[mask])
            print(
                f"| {name}, {subset} | {m['count']} | {m['yaw']:.2f} | {m['pitch']:.2f} | {m['roll']:.2f} "
                f"| {m['mean']:.2f} |"
            )


if __name__ == "__main__":
    main()
