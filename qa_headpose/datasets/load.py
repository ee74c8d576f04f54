"""One entry point for every dataset layout: a .npz, a .mat folder, BIWI, AFLW_extra or Pointing'04."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.errors import DataError
from qa_headpose.datasets import aflw_extra, biwi, pointing04
from qa_headpose.datasets.faceset import FaceSet, filter_protocol
from qa_headpose.datasets.mat import load_mat_folder
from qa_headpose.datasets.npz import load_fsanet_npz


def load_faces(
    path: str | os.PathLike,
    labels: str | os.PathLike = "aflw",
    progress: Callable[[int, int], None] | None = None,
) -> FaceSet:
    """Loads an FSA-Net npz file or a 300W-LP/AFLW2000, BIWI, AFLW_extra or Pointing'04 folder, by what ``path`` is.

    A BIWI folder (``hpdb/`` or ``SS/frame_XXXXX_rgb.png``) is cropped around the face
    detector's boxes (`biwi.load_biwi_folder`). An AFLW_extra folder (``labels.csv`` +
    ``crops/``) takes ``labels`` (see `aflw_extra.load_aflw_extra`); angles it lacks are NaN. A Pointing'04
    folder (``PersonNN/personNN*.txt``) has no roll: NaN.
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
        if pointing04.is_pointing04_folder(path):
            return pointing04.load_pointing04_folder(path)
        return load_mat_folder(path, progress=progress)
    if path.suffix == ".npz":
        return load_fsanet_npz(path)
    raise DataError(f"Expected an FSA-Net .npz file or a folder of images with .mat labels. Received: {path}")


def concat_faces(sets: list[FaceSet]) -> FaceSet:
    """One `FaceSet` from several."""
    return FaceSet(
        [im for s in sets for im in s.images],
        np.concatenate([s.boxes for s in sets]),
        np.concatenate([s.poses for s in sets]),
        [n for s in sets for n in s.names],
    )


def load_filtered(
    paths: list[str | os.PathLike],
    limit_deg: float | None = angles.ANGLE_LIMIT_DEG,
    progress: Callable[[int, int], None] | None = None,
    unlabelled_ok: bool = False,
) -> tuple[FaceSet, dict[str, int]]:
    """Loads and concatenates datasets, applying the |angle| <= limit filter unless limit is None.

    ``progress`` is called with (faces read, faces in the folder) while an image folder is read.
    ``unlabelled_ok``: an angle a dataset does not annotate (NaN, such as Pointing'04's roll) passes the
    filter, for evaluation, which scores only the annotated angles; training keeps the default.
    """
    faces = concat_faces([load_faces(p, progress=progress) for p in paths])
    dropped = 0
    if limit_deg is not None:
        faces, dropped = filter_protocol(faces, limit_deg, unlabelled_ok)
    if len(faces) == 0:
        raise DataError(f"No face left after the |angle| <= {limit_deg} filter in {list(map(str, paths))}")
    return faces, {"kept": len(faces), "dropped": dropped}
