"""Checks on an output path before any work is done, so a run never fails at its last step. No TF.

`output_problem` says why a file cannot be written there (it exists, it is a folder, a
parent is a regular file, or the nearest existing folder refuses new files), or None.
The check creates nothing: the writability probe is a temporary file that is removed
at once, since permissions alone do not tell (root ignores them; ``/proc`` and
read-only mounts refuse new files whatever the mode bits say).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def nearest_existing(path: str | os.PathLike) -> Path:
    """The path itself or its closest ancestor that exists (absolute)."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in ``folder`` (or the folders it needs created), or None."""
    base = nearest_existing(folder)
    if not base.is_dir():
        return f"{base} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".qa-headpose-write-test", dir=base)
    except OSError as exc:
        return f"{base} does not accept new files ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def output_problem(path: str | os.PathLike, force: bool = False) -> str | None:
    """Why the output file ``path`` cannot be written, or None when it can.

    Args:
        path: the file to write.
        force: an existing file may be replaced.

    Returns:
        A one-line reason naming the path, or None.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    if path.exists() and not force:
        return f"{path} already exists; pass --force to overwrite it"
    problem = folder_problem(path.parent if str(path.parent) else ".")
    return f"Cannot write {path}: {problem}" if problem else None
