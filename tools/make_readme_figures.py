"""The README's pictures, from the shipped models and the shipped public-domain sample photo only.

Usage: python tools/make_readme_figures.py  (writes docs/images/sample_poses.jpg and docs/images/frame_strip.jpg)

The frame strip is a synthetic clip of the sample photo (turned in the image plane both ways, mirrored), each frame
run through `HeadPoseEstimator.predict_image` and drawn with `draw.draw_face`: no research data is used.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from qa_headpose import HeadPoseEstimator
from qa_headpose.inference.draw import draw_face, draw_text

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "qa_headpose" / "assets" / "astronaut.jpg"
OUT = REPO / "docs" / "images"


def annotate(estimator: HeadPoseEstimator, image: np.ndarray, mode: str = "both") -> np.ndarray:
    out = image.copy()
    for face in estimator.predict_image(image):
        yaw, pitch, roll = face.pose[:3]
        draw_face(out, face.box, face.pose[:3], mode, label=f"yaw {yaw:+.0f}  pitch {pitch:+.0f}  roll {roll:+.0f}")
    return out


def synthetic_frames(image: np.ndarray, size: int = 320) -> list[tuple[str, np.ndarray]]:
    """A few frames of the sample: as it is, rolled both ways, mirrored."""
    h, w = image.shape[:2]
    frames = []
    for label, angle, mirror, zoom in (
        ("original", 0, False, 1.0),
        ("image turned 20 deg ccw", 20, False, 1.0),
        ("image turned 20 deg cw", -20, False, 1.0),
        ("mirrored", 0, True, 1.0),
    ):
        m = cv2.getRotationMatrix2D((w * 0.55, h * 0.3), angle, zoom)
        frame = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40))
        if mirror:
            frame = np.ascontiguousarray(frame[:, ::-1])
        frames.append((label, cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)))
    return frames


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    estimator = HeadPoseEstimator("accurate", num_threads=2)
    image = cv2.imread(str(SAMPLE))
    cv2.imwrite(str(OUT / "sample_poses.jpg"), annotate(estimator, image), [cv2.IMWRITE_JPEG_QUALITY, 88])
    tiles = []
    for label, frame in synthetic_frames(image):
        tile = annotate(estimator, frame, "axes")
        draw_text(tile, label, (6, tile.shape[0] - 10), 0.5)
        tiles.append(tile)
    cv2.imwrite(str(OUT / "frame_strip.jpg"), np.hstack(tiles), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {OUT / 'sample_poses.jpg'} and {OUT / 'frame_strip.jpg'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
