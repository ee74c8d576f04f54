"""One entry point for every dataset layout: a .npz, a .mat folder, BIWI or AFLW_extra."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from qa_headpose.core.errors import DataError
from qa_headpose.datasets import aflw_extra, biwi
from qa_headpose.datasets.faceset import FaceSet
from qa_headpose.datasets.mat import load_mat_folder
from qa_headpose.datasets.npz import load_fsanet_npz


def load_faces(
    path: str | os.PathLike,
    labels: str | os.PathLike = "aflw",
    progress: Callable[[int, int], None] | None = None,
) -> FaceSet:
    """Loads an FSA-Net npz file or a 300W-LP/AFLW2000, BIWI or AFLW_extra folder, by what ``path`` is.

    A BIWI folder (``hpdb/`` or ``SS/frame_XXXXX_rgb.png``) is cropped around the face
    detector's boxes (`biwi.load_biwi_folder`). An AFLW_extra folder (``labels.csv`` +
    ``crops/``) takes ``labels`` (see `aflw_extra.load_aflw_extra`); angles it lacks are NaN.
    ``progress`` is called with (faces read, faces in the folder) while a 300W-LP/AFLW2000 folder is read.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"No such file or folder: {path}")
    if path.is_dir():
        if aflw_extra.is_aflw_extra_folder(path):
            return aflw_extra.load_aflw_extra(path, labels)
        if biwi.is_biwi_folder(path):
            return biwi.load_biwi_folder(path)
        return load_mat_folder(path, progress=progress)
    if path.suffix == ".npz":
        return load_fsanet_npz(path)
    raise DataError(f"Expected an FSA-Net .npz file or a folder of images with .mat labels. Received: {path}")
