"""What native libraries print on file descriptor 2, filtered or silenced: Python's ``sys.stderr`` never sees it.

TensorFlow's C++ side writes its start-up block (``All log messages before
absl::InitializeLog() ...``, ``Could not find cuda drivers ...``, ``failed call to cuInit``)
straight to the process's stderr, before and regardless of Python's logging; only a
file-descriptor redirect hides it. `filtered` sends fd 2 to a temporary file for the
``with`` block, then writes back every line that does not match ``drop``, so a real
error from native code is still shown. Python exceptions are raised, never printed, so
they pass through untouched.

While a filter is on, `CONSOLE` still writes to the real stderr: progress bars and status
lines given ``file=CONSOLE`` keep moving during a filtered step (a minute of conversion).
`native_stderr_silenced` drops everything instead, for decoders whose complaints the caller reports itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

# Set (to anything) to see what is filtered: ``qa-headpose COMMAND --verbose`` sets it.
VERBOSE_ENV = "QA_HEADPOSE_VERBOSE"
# What TensorFlow prints on a machine without a GPU, about itself at start-up, or from its converter
# (its calibrator's settings, LiteRT's delegate), and nothing else.
TF_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc|cuda_platform\.cc|cuda_executor\.cc|cuda_diagnostics\.cc|cuda_dnn\.cc|cuda_fft\.cc"
    r"|cuda_blas\.cc|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered"
    r"|failed call to cuInit|oneDNN custom operations are on|This TensorFlow binary is optimized"
    r"|To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags"
    r"|TF-TRT Warning|port\.cc:\d+\]"
    r"|^fully_quantize: \d|Created TensorFlow Lite XNNPACK delegate|^INFO: Initialized TensorFlow Lite runtime"
    r"|Estimated count of arithmetic ops|Ignored output_format|Ignored drop_control_dependency"
)
_lock = threading.Lock()
_real_stderr_fd: int | None = None  # the saved stderr while a filter is on


class _Console(io.TextIOBase):
    """A text stream to the real stderr, even while `filtered` redirects fd 2."""

    def write(self, text: str) -> int:
        fd = _real_stderr_fd
        if fd is None:
            return sys.stderr.write(text)
        try:
            os.write(fd, text.encode(errors="replace"))
        except OSError:  # the filter ended (and closed the fd) under this thread
            return sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        if _real_stderr_fd is None:
            sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def fileno(self) -> int:
        return _real_stderr_fd if _real_stderr_fd is not None else sys.stderr.fileno()

    def writable(self) -> bool:
        return True


CONSOLE = _Console()


def quiet() -> contextlib.AbstractContextManager[None]:
    """`filtered` with `TF_NOISE`, unless `VERBOSE_ENV` is set: around TensorFlow's and LiteRT's native calls."""
    return filtered(TF_NOISE, enabled=not os.environ.get(VERBOSE_ENV))


@contextlib.contextmanager
def filtered(drop: re.Pattern[str], enabled: bool = True) -> Iterator[None]:
    """Hides the lines native code writes to fd 2 inside the block that match ``drop``; the rest follow it.

    Args:
        drop: lines to hide (searched, not matched from the start).
        enabled: False runs the block as it is (e.g. under ``--verbose``).
    """
    fd = 2  # what native code writes to, whatever Python's sys.stderr is
    try:
        os.fstat(fd)
    except OSError:  # no stderr at all (a daemon, pythonw)
        enabled = False
    if not enabled:
        yield
        return
    global _real_stderr_fd
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        with _lock:
            outermost = _real_stderr_fd is None
            if outermost:
                _real_stderr_fd = saved
        try:
            os.dup2(sink.fileno(), fd)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            with _lock:
                if outermost:
                    _real_stderr_fd = None
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors="replace").splitlines() if not drop.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


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
