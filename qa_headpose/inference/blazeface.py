"""BlazeFace's output decoding in numpy: anchors, boxes and MediaPipe's weighted NMS. No TF.

Re-implemented from MediaPipe's ``SsdAnchorsCalculator`` and
``TensorsToDetectionsCalculator`` with the constants of its
``face_detection_short_range.pbtxt``; `detect.FaceDetector` runs the model and calls these.
Boxes are ``(x_min, y_min, x_max, y_max)``.
"""

from __future__ import annotations

import numpy as np

DETECTOR_INPUT_SIZE = 128
# Anchor layouts of MediaPipe's graphs, by (input side, anchor count): the strides of the
# SSD layers, the anchors per layer and grid cell (2 with the interpolated scale), and
# the name of the model (which picks its box mapping).
ANCHOR_LAYOUTS = {(128, 896): ((8, 16, 16, 16), 2, "short"), (192, 2304): ((4,), 1, "full")}
# MediaPipe's NMS overlap for this model.
NMS_IOU = 0.3


def make_anchors(
    input_size: int = DETECTOR_INPUT_SIZE, strides: tuple[int, ...] = (8, 16, 16, 16), per_layer: int = 2
) -> np.ndarray:
    """Anchor centres of a BlazeFace model (MediaPipe's SsdAnchorsCalculator, fixed anchor size).

    Args:
        input_size: the model's input side, pixels.
        strides: stride of each SSD layer; layers with the same stride share one grid.
        per_layer: anchors each layer adds per grid cell (2 with the interpolated scale).

    Returns:
        float32 (n, 2): x, y centres in [0, 1], in the model's output order (896 for the
        short-range defaults).
    """
    centres = []
    layer = 0
    while layer < len(strides):
        # Layers that share a stride share a grid; all anchors have unit size, so only
        # their count per cell matters.
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = per_layer * (last - layer)
        grid = int(np.ceil(input_size / strides[layer]))
        ys, xs = np.mgrid[0:grid, 0:grid]
        xy = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(xy, per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_size: int = DETECTOR_INPUT_SIZE) -> np.ndarray:
    """Decodes the regressor output to normalised boxes and keypoints.

    Args:
        raw: float32 (n, 16): x, y, w, h of the box, then 6 keypoints (x, y), model pixels
            relative to the anchor centre.
        anchors: float32 (n, 2) anchor centres from `make_anchors`.
        input_size: the model's input side, pixels.

    Returns:
        float32 (n, 16): x_min, y_min, x_max, y_max, then 6 keypoints (x, y), in [0, 1] of the
        model input.
    """
    raw = np.asarray(raw, np.float32) / input_size
    out = np.empty_like(raw)
    cx = raw[:, 0] + anchors[:, 0]
    cy = raw[:, 1] + anchors[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = cx - half_w, cy - half_h, cx + half_w, cy + half_h
    out[:, 4::2] = raw[:, 4::2] + anchors[:, :1]
    out[:, 5::2] = raw[:, 5::2] + anchors[:, 1:]
    return out


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of boxes (n, 4); all (x_min, y_min, x_max, y_max)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    values: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU
) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    The best remaining box absorbs every remaining box that overlaps it by more than
    ``iou_threshold``; the merged box and keypoints are the score-weighted mean of the
    group, and the score is the best one's.

    Args:
        values: (n, k) boxes (first 4 columns, x_min, y_min, x_max, y_max) with extra columns
            (keypoints) averaged the same way.
        scores: (n,) scores.
        iou_threshold: overlap above which boxes are merged.

    Returns:
        (values (k,), score) per face, best score first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    values, scores = np.asarray(values, np.float64)[order], np.asarray(scores, np.float64)[order]
    out = []
    while len(scores):
        group = box_iou(values[0, :4], values[:, :4]) > iou_threshold
        group[0] = True
        weights = scores[group]
        merged = (values[group] * weights[:, None]).sum(axis=0) / weights.sum()
        out.append((merged, float(scores[0])))
        values, scores = values[~group], scores[~group]
    return out
