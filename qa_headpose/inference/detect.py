"""Offline face detection: Google's BlazeFace models on the LiteRT interpreter. No TF.

The default model (``models/face_detection_short_range.tflite``, Apache-2.0, from
the mediapipe 0.10.21 wheel; see ``models/README.md``) takes one 128x128 RGB image
in [-1, 1] and returns 896 anchor-relative boxes with 6 keypoints each and a logit
per box, which `blazeface` decodes (anchors, boxes, MediaPipe's weighted non-maximum
suppression, in numpy). It is made for faces that fill at least about
a ninth of the image's longer side (portraits, selfies, webcams at arm's length);
smaller faces are missed. The full-range sparse model (``"full"``: 192x192 input,
2304 anchors, about 5x slower) finds faces down to about a twentieth of the side.

A detector box is not the landmark box the head-pose model was trained on:
`crop_box_from_detection` maps one to the other with constants fitted on the
AFLW2000 train split, and `preprocess.crop_face` then adds the training margin.

Boxes are ``(x_min, y_min, x_max, y_max)`` in pixels of the full image.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from qa_headpose.core.errors import ModelError
from qa_headpose.inference import registry
from qa_headpose.inference.blazeface import (  # noqa: F401 (this module's names before the split)
    ANCHOR_LAYOUTS,
    DETECTOR_INPUT_SIZE,
    NMS_IOU,
    box_iou,
    decode_boxes,
    make_anchors,
    weighted_nms,
)
from qa_headpose.inference.interpreter import InterpreterPool, check_max_concurrency, load_interpreter, read_model
from qa_headpose.inference.results import Detection, FaceResult  # noqa: F401 (FaceResult's old home)

# The shipped BlazeFace models by name: "short" (faces within ~2 m, the default) and
# "full" (full-range sparse model: smaller faces, about 5x slower).
DETECTOR_MODELS = {
    "short": registry.MODELS_DIR / "face_detection_short_range.tflite",
    "full": registry.MODELS_DIR / "face_detection_full_range_sparse.tflite",
}
DETECTOR_MODEL = DETECTOR_MODELS["short"]
# MediaPipe's default min_detection_confidence for this model.
MIN_SCORE = 0.5
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")

# Landmark box from detector box, per model: (shift_x, shift_y, scale_x, scale_y), the
# centre shift in detector box widths/heights and the landmark side / detector side.
# Fitted by `tools/measure_detector.py fit` as the medians over the AFLW2000 train-split
# faces (names not in splits/aflw2000_val.txt, |angles| <= 99) that the model found
# (short: 1145 faces, full: 1076); the val split was not used. The x shifts came out as
# -0.0001 and 0.0023, i.e. 0 as the mirror symmetry of faces demands, and are set to 0.
BOX_MAPPINGS: dict[str, tuple[float, float, float, float]] = {
    "short": (0.0, 0.057, 0.849, 0.893),
    "full": (0.0, 0.088, 0.808, 0.841),
}


def match_detection(detections: list[Detection], box: np.ndarray) -> int | None:
    """Index of the best-scoring detection whose box holds the centre of ``box``, or None.

    This is how a face counts as found in `docs/detection.md`: ``box`` is the ground-truth
    landmark box (x_min, y_min, x_max, y_max), pixels.
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for i, det in enumerate(detections):
        x0, y0, x1, y1 = det.box
        if x0 <= cx <= x1 and y0 <= cy <= y1:
            return i
    return None


def fit_box_mapping(detector_boxes: np.ndarray, landmark_boxes: np.ndarray) -> tuple[float, float, float, float]:
    """Fits `crop_box_from_detection`'s constants: robust (median) centre shift and size ratio.

    Args:
        detector_boxes: (n, 4) detector boxes, pixels.
        landmark_boxes: (n, 4) landmark boxes of the same faces, pixels.

    Returns:
        (shift_x, shift_y, scale_x, scale_y): centre shift in detector widths/heights and
        landmark side / detector side.

    Raises:
        ValueError: for empty or mismatched inputs.
    """
    det = np.asarray(detector_boxes, np.float64).reshape(-1, 4)
    lm = np.asarray(landmark_boxes, np.float64).reshape(-1, 4)
    if len(det) == 0 or det.shape != lm.shape:
        raise ValueError(f"Expected two (n, 4) arrays with n > 0. Received: {det.shape} and {lm.shape}")
    dw, dh = det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]
    shift_x = ((lm[:, 0] + lm[:, 2]) - (det[:, 0] + det[:, 2])) / 2 / dw
    shift_y = ((lm[:, 1] + lm[:, 3]) - (det[:, 1] + det[:, 3])) / 2 / dh
    scale_x = (lm[:, 2] - lm[:, 0]) / dw
    scale_y = (lm[:, 3] - lm[:, 1]) / dh
    return tuple(float(np.median(v)) for v in (shift_x, shift_y, scale_x, scale_y))


def crop_box_from_detection(
    box: tuple[float, float, float, float] | np.ndarray, mapping: tuple[float, float, float, float] | str = "short"
) -> np.ndarray:
    """The landmark-like box the head-pose model was trained on, from a detector box.

    Applies the centre shift and size ratio fitted on the AFLW2000 train split
    (`BOX_MAPPINGS`); pass the result to `preprocess.crop_face`, which adds the
    training margin.

    Args:
        box: (x_min, y_min, x_max, y_max) of the detector, pixels.
        mapping: the detector's name in `BOX_MAPPINGS`, or (shift_x, shift_y, scale_x, scale_y).

    Returns:
        float32 (4,): x_min, y_min, x_max, y_max, pixels.
    """
    shift_x, shift_y, scale_x, scale_y = BOX_MAPPINGS[mapping] if isinstance(mapping, str) else mapping
    x0, y0, x1, y1 = np.asarray(box, np.float64).reshape(4)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + shift_x * w, (y0 + y1) / 2 + shift_y * h
    hw, hh = scale_x * w / 2, scale_y * h / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh], np.float32)


class FaceDetector:
    """Finds faces in a BGR image with a BlazeFace model on LiteRT.

    Thread-safe: one detector may be shared by any number of threads. Each concurrent
    `detect` call gets an interpreter of its own from a pool (`runtime.InterpreterPool`,
    at most ``max_concurrency``), so every call returns exactly what it returns alone.

    Args:
        model_path: a BlazeFace .tflite, or the name of a shipped one ("short", "full"); None
            for "short".
        num_threads: interpreter threads.
        min_score: lowest detector confidence kept, in (0, 1).
        nms_iou: IoU above which overlapping boxes are merged.
        max_concurrency: most interpreters (concurrent calls); None for the number of CPUs.

    Raises:
        ModelError: if the model is missing or is not a BlazeFace-style detector.
        ValueError: for a min_score outside (0, 1), nms_iou outside (0, 1], or num_threads
            or max_concurrency < 1.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        num_threads: int = 1,
        min_score: float = MIN_SCORE,
        nms_iou: float = NMS_IOU,
        max_concurrency: int | None = None,
    ) -> None:
        if not 0.0 < float(min_score) < 1.0:
            raise ValueError(f"min_score must be in (0, 1). Received: min_score={min_score}")
        if not 0.0 < float(nms_iou) <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1]. Received: nms_iou={nms_iou}")
        max_concurrency = check_max_concurrency(max_concurrency)
        model_path = DETECTOR_MODELS.get(model_path, model_path) if isinstance(model_path, str) else model_path
        self.model_path = Path(model_path) if model_path is not None else DETECTOR_MODEL
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.num_threads = int(num_threads)
        self._content, name = read_model(self.model_path)
        interpreter = load_interpreter(self._content, num_threads, name=name)
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        shape_in = tuple(inputs[0]["shape"]) if len(inputs) == 1 else ()
        if len(shape_in) != 4 or shape_in[1] != shape_in[2] or shape_in[3] != 3 or len(outputs) != 2:
            raise ModelError(f"Not a BlazeFace detector: {self.model_path} (input {shape_in}, {len(outputs)} outputs)")
        self.input_size = int(shape_in[1])
        self._input_index = inputs[0]["index"]
        by_width = {int(o["shape"][-1]): o for o in outputs}
        if set(by_width) != {1, 16}:
            raise ModelError(
                f"Not a BlazeFace detector: {self.model_path} (outputs {[tuple(o['shape']) for o in outputs]})"
            )
        self._boxes_index = by_width[16]["index"]
        self._scores_index = by_width[1]["index"]
        layout = ANCHOR_LAYOUTS.get((self.input_size, int(by_width[16]["shape"][1])))
        if layout is None:
            raise ModelError(f"Unknown BlazeFace anchor layout: {self.model_path} (input {shape_in})")
        self.anchors = make_anchors(self.input_size, layout[0], layout[1])
        self.anchors.setflags(write=False)  # shared by all threads
        self.name = layout[2]
        self.box_mapping = BOX_MAPPINGS[self.name]
        self._pool: InterpreterPool = InterpreterPool(
            lambda: load_interpreter(self._content, self.num_threads, name=name), max_concurrency, interpreter
        )

    @property
    def max_concurrency(self) -> int:
        """Most interpreters this detector creates, i.e. `detect` calls that run at the same time."""
        return self._pool.max_size

    def __reduce__(self) -> tuple:
        # Pickles as its settings (for process pools); the worker loads the model anew.
        return (type(self), (self.model_path, self.num_threads, self.min_score, self.nms_iou, self.max_concurrency))

    def crop_box(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """The landmark-like box of one of this detector's boxes (`crop_box_from_detection`)."""
        return crop_box_from_detection(box, self.box_mapping)

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Fits the image into the square input, padding evenly; returns (input, scale, pad_x, pad_y)."""
        h, w = image.shape[:2]
        s = self.input_size
        scale = min(s / w, s / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (nw, nh), interpolation=interp)
        pad_x, pad_y = (s - nw) // 2, (s - nh) // 2
        canvas = np.zeros((s, s, 3), np.uint8)
        canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized[:, :, ::-1]  # BGR -> RGB
        x = canvas.astype(np.float32)[None] / 127.5 - 1.0
        # The input pixel grid maps back with the exact per-axis scale, not the rounded size.
        return x, scale, pad_x, pad_y

    def detect(self, image: np.ndarray, max_faces: int | None = None) -> list[Detection]:
        """Faces in one image, best score first (thread-safe).

        Args:
            image: uint8 BGR (H, W, 3).
            max_faces: keep at most this many (the best-scoring); None keeps all.

        Returns:
            A list of `Detection`, boxes clipped to the image; empty for an image 1 pixel
            high or wide (no face fits).

        Raises:
            ValueError: if the image is not uint8 (H, W, 3) with H, W >= 1.
        """
        image = np.asarray(image)
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) == 1:
            return []
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
            raise ValueError(
                f"detect takes a uint8 BGR image (H, W, 3). Received: dtype={image.dtype}, shape={image.shape}"
            )
        x, scale, pad_x, pad_y = self._letterbox(image)
        with self._pool.borrow() as interpreter:
            interpreter.set_tensor(self._input_index, x)
            interpreter.invoke()
            raw = interpreter.get_tensor(self._boxes_index)[0]  # copies, not views of the interpreter
            logits = interpreter.get_tensor(self._scores_index)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
        keep = scores >= self.min_score
        if not np.any(keep):
            return []
        decoded = decode_boxes(raw[keep], self.anchors[keep], self.input_size)
        merged = weighted_nms(decoded, scores[keep], self.nms_iou)
        h, w = image.shape[:2]
        offset = np.array([pad_x, pad_y], np.float64)
        out = []
        for values, score in merged:
            if max_faces is not None and len(out) >= max_faces:
                break
            pts = (values.reshape(-1, 2) * self.input_size - offset) / scale
            x0, y0 = np.clip(pts[0], 0, [w, h])
            x1, y1 = np.clip(pts[1], 0, [w, h])
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            box = (float(x0), float(y0), float(x1), float(y1))
            out.append(Detection(box, float(score), pts[2:].astype(np.float32)))
        return out
