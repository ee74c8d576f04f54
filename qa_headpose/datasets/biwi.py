"""BIWI Kinect Head Pose frames and labels, in the package's (yaw, pitch, roll) degrees. No TF.

Layout of the release (``kinect_head_pose_db.tgz`` and ``db_annotations.tgz``)::

    hpdb/SS/frame_XXXXX_rgb.png      640x480 colour frame, SS = 01..24
    hpdb/SS/frame_XXXXX_pose.txt     3x3 rotation matrix (3 rows), blank line, head centre (x y z, mm)
    db_annotations.tgz: SS/frame_XXXXX_pose.bin   6 float32: head centre x, y, z (mm), pitch, yaw, roll (deg)

Conventions (evidence in ``docs/datasets.md``):

- ``pose.txt``: ``R`` maps head coordinates to the Kinect camera frame (x to the image
  right, y down, z away from the camera): ``p_camera = R @ p_head + centre``. The
  package's angles follow from it with the formula of Hopenet's and FSA-Net's BIWI
  loaders (they transpose R first): with ``M = R.T``,
  ``yaw = -atan2(-M20, hypot(M21, M22))``, ``pitch = atan2(M21, M22)``,
  ``roll = -atan2(M10, M00)``. So ``BIWI_noTrack.npz`` labels use the package convention.
- ``.bin``: (pitch, yaw, roll) whose yaw and roll have the package's signs and whose
  pitch has the opposite sign: (yaw, pitch, roll) = (bin_yaw, -bin_pitch, bin_roll).

Frames carry no face box. FSA-Net cut ``BIWI_noTrack.npz`` around MTCNN boxes; here
the box comes from a callable, by default the package's BlazeFace detector
(`qa_headpose.inference.detect`) mapped to the landmark-like box the model was trained on.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tarfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qa_headpose.core.errors import DataError
from qa_headpose.datasets.faceset import FaceSet, loose_crop
from qa_headpose.inference.images import read_image

logger = logging.getLogger(__name__)

LABEL_ARCHIVE = "db_annotations.tgz"
# db_annotations.tgz of the official release: labels of 15,677 frames in 24 sequences.
LABEL_COUNT = 15677
SEQUENCE_COUNT = 24
FRAME_GLOB = "frame_*_rgb.png"
_BIN_RE = re.compile(r"(?:^|/)(\d{2})/frame_(\d{5})_pose\.bin$")
_FRAME_RE = re.compile(r"^frame_(\d{5})_rgb\.png$")
# pose.txt stores 6 significant digits: R @ R.T deviates from I by ~1e-5.
_ROTATION_TOLERANCE = 1e-3
# Frames decoded ahead of the face box callable.
_CHUNK = 64

FaceBoxFn = Callable[[np.ndarray], "np.ndarray | None"]
LabelKey = tuple[str, int]


def rotation_to_ypr(rotation: np.ndarray) -> np.ndarray:
    """Converts a BIWI ``pose.txt`` rotation (head -> Kinect camera) to (yaw, pitch, roll).

    Args:
        rotation: (3, 3) matrix as written in ``frame_XXXXX_pose.txt`` (rows as in the file).

    Returns:
        float32 array (3,): (yaw, pitch, roll) in degrees, the package convention.
    """
    m = np.asarray(rotation, dtype=np.float64).reshape(3, 3).T
    yaw = -math.atan2(-m[2, 0], math.hypot(m[2, 1], m[2, 2]))
    pitch = math.atan2(m[2, 1], m[2, 2])
    roll = -math.atan2(m[1, 0], m[0, 0])
    return np.degrees(np.array([yaw, pitch, roll])).astype(np.float32)


def bin_to_ypr(values: np.ndarray) -> np.ndarray:
    """Converts the 6 values of a ``frame_XXXXX_pose.bin`` to (yaw, pitch, roll) degrees.

    Args:
        values: (6,) head centre x, y, z (mm), then pitch, yaw, roll (degrees, BIWI signs).

    Returns:
        float32 array (3,): (yaw, -pitch, roll), the package convention.
    """
    v = np.asarray(values, dtype=np.float32).reshape(6)
    return np.array([v[4], -v[3], v[5]], dtype=np.float32)


def parse_pose_bin(payload: bytes, what: str = ".bin") -> np.ndarray:
    """Parses one ``frame_XXXXX_pose.bin``: float32 (6,) centre x, y, z (mm), pitch, yaw, roll (deg).

    Raises:
        DataError: if the payload is not 6 finite little-endian float32 values.
    """
    if len(payload) != 24:
        raise DataError(f"{what}: expected 24 bytes (6 float32). Received: {len(payload)} bytes")
    values = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{what}: non-finite values {values.tolist()}")
    return values


def load_biwi_labels(path: str | os.PathLike) -> dict[LabelKey, np.ndarray]:
    """Reads every label of ``db_annotations.tgz`` (without extracting it).

    Args:
        path: the archive; its entries are ``SS/frame_XXXXX_pose.bin``.

    Returns:
        dict mapping (sequence "01".."24", frame number) to float32 (3,) (yaw, pitch, roll)
        degrees in the package convention (see `bin_to_ypr`).

    Raises:
        DataError: if the archive is missing, corrupt, holds a malformed .bin or no label.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Not a file: {path}")
    labels: dict[LabelKey, np.ndarray] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                match = _BIN_RE.search(member.name)
                if not member.isfile() or match is None:
                    continue
                handle = tar.extractfile(member)
                payload = handle.read() if handle is not None else b""
                values = parse_pose_bin(payload, f"{path}:{member.name}")
                labels[(match.group(1), int(match.group(2)))] = bin_to_ypr(values)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"Cannot read the BIWI label archive {path}: {exc}") from None
    if not labels:
        raise DataError(f"No SS/frame_XXXXX_pose.bin entry in {path}")
    return labels


def read_pose_txt(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads a ``frame_XXXXX_pose.txt``: the rotation (3, 3) and the head centre (3,) in mm.

    Raises:
        DataError: if the file is missing, does not hold 12 numbers, or R is not a rotation.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No BIWI pose file: {path}")
    try:
        numbers = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: not a BIWI pose file ({exc})") from None
    if numbers.size != 12 or not np.all(np.isfinite(numbers)):
        raise DataError(f"{path}: expected 9 rotation values and 3 centre values. Received: {numbers.size} numbers")
    rotation, centre = numbers[:9].reshape(3, 3), numbers[9:]
    error = np.abs(rotation @ rotation.T - np.eye(3)).max()
    if error > _ROTATION_TOLERANCE or np.linalg.det(rotation) < 0:
        raise DataError(f"{path}: the 3x3 matrix is not a rotation (|R R^T - I| = {error:.2g})")
    return rotation, centre


def read_biwi_pose_txt(path: str | os.PathLike) -> np.ndarray:
    """The label of one frame from its ``frame_XXXXX_pose.txt``.

    Returns:
        float32 array (3,): (yaw, pitch, roll) degrees, the package convention.

    Raises:
        DataError: if the file is missing or malformed (see `read_pose_txt`).
    """
    rotation, _ = read_pose_txt(path)
    return rotation_to_ypr(rotation)


def find_frames(folder: str | os.PathLike) -> list[Path]:
    """The ``frame_XXXXX_rgb.png`` files below ``folder`` (any depth), sorted by sequence and frame."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob(FRAME_GLOB) if _FRAME_RE.match(p.name))


def is_biwi_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding ``hpdb/``, sequence folders of BIWI frames, or BIWI frames."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "hpdb").is_dir():
        return True
    return any(True for _ in path.glob(FRAME_GLOB)) or any(True for _ in path.glob(f"*/{FRAME_GLOB}"))


def frame_key(image_path: Path) -> LabelKey:
    """(sequence, frame number) of ``.../SS/frame_XXXXX_rgb.png``."""
    match = _FRAME_RE.match(image_path.name)
    if match is None:
        raise DataError(f"Not a BIWI frame name (frame_XXXXX_rgb.png): {image_path}")
    return image_path.parent.name, int(match.group(1))


def detector_face_boxes(min_score: float | None = None) -> FaceBoxFn:
    """A face box callable from the package's BlazeFace detector (`qa_headpose.inference.detect`).

    The callable takes a uint8 BGR frame and returns the landmark-like box (4,) of the
    best-scoring face (`detect.crop_box_from_detection`), or None when no face is found.

    Raises:
        DataError: if the detector module or its model is not available.
    """
    try:
        from qa_headpose.inference import detect
    except ImportError as exc:
        raise DataError(
            f"BIWI frames carry no face box and the face detector is not available ({exc}); "
            "pass face_boxes=<callable(image) -> box or None>"
        ) from None
    kwargs = {} if min_score is None else {"min_score": min_score}
    try:
        detector = detect.FaceDetector(**kwargs)
    except (OSError, ValueError) as exc:  # ModelError is a ValueError
        raise DataError(f"Cannot start the face detector for BIWI frames: {exc}") from None

    def face_box(image: np.ndarray) -> np.ndarray | None:
        found = detector.detect(image, max_faces=1)
        return detect.crop_box_from_detection(found[0].box) if found else None

    return face_box


def _resolve_labels(folder: Path, labels: Mapping[LabelKey, np.ndarray] | str | os.PathLike | None):
    if labels is None:
        for archive in (folder / LABEL_ARCHIVE, folder.parent / LABEL_ARCHIVE):
            if archive.is_file():
                return load_biwi_labels(archive)
        return {}
    if isinstance(labels, (str, os.PathLike)):
        return load_biwi_labels(labels)
    return labels


def load_biwi_folder(
    folder: str | os.PathLike,
    labels: Mapping[LabelKey, np.ndarray] | str | os.PathLike | None = None,
    face_boxes: FaceBoxFn | None = None,
    workers: int = 4,
) -> FaceSet:
    """Loads BIWI frames as a `FaceSet` of loose crops around a face box.

    Each frame's label is its ``frame_XXXXX_pose.txt`` when there is one, else the
    entry of ``labels`` (the ``.bin`` archive). Frames where ``face_boxes`` finds no
    face are skipped (logged).

    Args:
        folder: ``hpdb/`` (or a folder holding it), one sequence folder, or any folder
            with ``SS/frame_XXXXX_rgb.png`` below it.
        labels: a dict from `load_biwi_labels`, or the path of ``db_annotations.tgz``;
            None reads ``db_annotations.tgz`` from ``folder`` or its parent if there is one;
            ``{}`` uses pose.txt only. Only read when a frame has no pose.txt.
        face_boxes: callable(uint8 BGR frame (480, 640, 3)) -> landmark-like face box
            (x_min, y_min, x_max, y_max) in frame pixels, or None for no face. None uses
            `detector_face_boxes` (the package's BlazeFace detector).
        workers: threads that decode the PNG frames.

    Returns:
        A `FaceSet` named ``SS/frame_XXXXX``, poses (yaw, pitch, roll) degrees.

    Raises:
        DataError: if there is no frame, a frame has neither a pose.txt nor a label, or no
            face is found in any frame.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Not a folder: {folder}")
    frames = find_frames(folder)
    if not frames:
        raise DataError(f"No BIWI frame ({FRAME_GLOB}) below {folder}")
    pose_txts = [path.with_name(path.name.replace("_rgb.png", "_pose.txt")) for path in frames]
    has_txt = [p.is_file() for p in pose_txts]
    # The archive is read only when a frame needs it (the full release has a pose.txt per frame).
    labels = {} if all(has_txt) else _resolve_labels(folder, labels)
    poses, missing = [], []
    for path, pose_txt, txt in zip(frames, pose_txts, has_txt):
        if txt:
            poses.append(read_biwi_pose_txt(pose_txt))
        elif frame_key(path) in labels:
            poses.append(np.asarray(labels[frame_key(path)], np.float32).reshape(3))
        else:
            missing.append(path)
    if missing:
        shown = ", ".join(str(p.relative_to(folder)) for p in missing[:5])
        raise DataError(
            f"{len(missing)} BIWI frame(s) have neither a _pose.txt nor a label in {LABEL_ARCHIVE}: "
            f"{shown}{' ...' if len(missing) > 5 else ''}"
        )
    if face_boxes is None:
        face_boxes = detector_face_boxes()
    images, boxes, kept_poses, names, skipped = [], [], [], [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Frames decode in the pool, a chunk at a time to bound memory; the box callable
        # (often one interpreter, not thread-safe) runs in this thread.
        for start in range(0, len(frames), _CHUNK):
            chunk = frames[start : start + _CHUNK]
            for path, image, pose in zip(chunk, pool.map(read_image, chunk), poses[start : start + _CHUNK]):
                box = face_boxes(image)
                if box is None:
                    skipped.append(path)
                    continue
                crop, crop_box = loose_crop(image, np.asarray(box, np.float32).reshape(4))
                sequence, number = frame_key(path)
                images.append(crop)
                boxes.append(crop_box)
                kept_poses.append(pose)
                names.append(f"{sequence}/frame_{number:05d}")
    if skipped:
        logger.warning("No face found in %d of %d BIWI frames, e.g. %s", len(skipped), len(frames), skipped[0])
    if not images:
        raise DataError(f"No face found in any of the {len(frames)} BIWI frames below {folder}")
    return FaceSet(images, np.array(boxes), np.array(kept_poses), names)
