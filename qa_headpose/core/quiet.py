"""Silencing what native code prints on stderr (LiteRT, OpenCV, FFmpeg, libpng), Python errors untouched."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hides what native code prints on file descriptor 2 while the block runs.

    LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate", OpenCV, FFmpeg and libpng
    warnings go there; a Python exception raised in the block still carries the error.
    Does nothing when ``sys.stderr`` has no file descriptor (e.g. under pytest's capture).
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
