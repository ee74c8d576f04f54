"""The fixed train/validation split: names listed in ``qa_headpose/splits/*.txt``, else a hash of the name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from qa_headpose.core.errors import DataError
from qa_headpose.datasets.faceset import FaceSet

SPLITS_DIR = Path(__file__).resolve().parents[1] / "splits"


def is_val_name(name: str, val_fraction: float = 0.15) -> bool:
    """Stable split rule: the first 8 hex digits of sha1(file name) below val_fraction * 2**32."""
    digest = hashlib.sha1(Path(name).name.encode()).hexdigest()
    return int(digest[:8], 16) < val_fraction * 2**32


def read_split(name: str) -> set[str]:
    """Names in a committed split file of `qa_headpose/splits` (one per line)."""
    path = SPLITS_DIR / f"{name}.txt"
    if not path.is_file():
        raise DataError(f"No split file {path}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def split_train_val(faces: FaceSet, split: str | None = "aflw2000_val") -> tuple[FaceSet, FaceSet]:
    """Splits faces into (train, val) with a committed val list, or the hash rule when None.

    Names are compared by file name, so the split holds wherever the folder lies.
    """
    if split is None:
        is_val = np.array([is_val_name(n) for n in faces.names], bool)
    else:
        val_names = read_split(split)
        is_val = np.array([Path(n).name in val_names for n in faces.names], bool)
    return faces.subset(~is_val), faces.subset(is_val)
