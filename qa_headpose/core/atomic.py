"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every artifact writer of the package (weights, JSON, .tflite/.onnx, npz, plots, CSV, video)
goes through this module. A write goes to a temporary file in the destination's folder
(same file system, so the rename is atomic), named uniquely per process *and* thread, so
two writers of one path never share a temporary file; the data is fsynced, the file
renamed over the destination with `os.replace`, and the folder fsynced so the rename
itself survives a crash. On any failure the temporary file is removed and the old file,
if any, is left as it was.

A model and the JSON beside it are two files, and no rename replaces two at once. The
choice made here (`write_model`): the JSON is written first and names the sha256 of the
model bytes; the model is written second. A crash between the two leaves the new JSON
beside the old model, and `inference.runtime.TFLiteRunner` detects it (the model's hash
differs from the JSON's ``sha256``) and refuses the pair with a `ModelError` instead of
running a model under a description that is not its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator


def temp_path(path: str | os.PathLike) -> Path:
    """A temporary path beside ``path``, unique per process and thread, with ``path``'s suffixes.

    All suffixes are kept (``.weights.h5``, not only ``.h5``) because cv2.imwrite, VideoWriter,
    np.savez, savefig and Keras ``save_weights`` pick the format from them.
    Prefer `atomic_path`; this and `commit` are for writers whose file outlives one block (`VideoSink`).
    """
    path = Path(path)
    base, dot, suffixes = path.name.lstrip(".").partition(".")
    return path.with_name(f".{base}.tmp{os.getpid()}-{threading.get_ident()}{dot}{suffixes}")


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform or file system without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Moves a finished temporary file (from `temp_path`) onto ``path``: fsync, `os.replace`, fsync the folder."""
    tmp, path = Path(tmp), Path(path)
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in the destination's folder; on success it replaces ``path`` atomically.

    For writers that need a path (cv2.imwrite, cv2.VideoWriter, Keras ``save_weights``,
    matplotlib ``savefig``, ``np.savez``). The temporary name keeps the destination's suffix.

    Args:
        path: the destination file.

    Yields:
        The temporary file's path; write the whole file there.

    Raises:
        FileNotFoundError: if the block wrote nothing at the temporary path.
        Whatever the block raises; the temporary file is then removed and ``path`` left as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"Nothing was written for {path}")
        commit(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Writes bytes atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON (indented, sorted keys, final newline) atomically."""
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def sha256_bytes(payload: bytes) -> str:
    """The hex sha256 of ``payload``."""
    return hashlib.sha256(payload).hexdigest()


def write_model(path: str | os.PathLike, payload: bytes, meta: dict[str, Any]) -> dict[str, Any]:
    """Writes a model file and its JSON (``<model>.json``) so that a crash never leaves a pair that passes as matched.

    The JSON goes first, with the model's ``sha256``; the model second. A reader that checks
    the hash (`TFLiteRunner`) detects a crash between the two writes.

    Args:
        path: the model file (.tflite, .onnx).
        payload: the model bytes.
        meta: the metadata; a copy with ``sha256`` added is written.

    Returns:
        The metadata written.
    """
    path = Path(path)
    meta = {**meta, "sha256": sha256_bytes(payload)}
    write_json(path.with_suffix(".json"), meta)
    write_bytes(path, payload)
    return meta
