"""Status lines on stderr: the library's log, shown so that no long step of a command is silent.

The library never prints; it logs each long step (reading faces, starting TensorFlow,
building, converting) at INFO on its module's logger. `setup_logging` shows those of
``qa_headpose`` as ``qa-headpose COMMAND: [  12 s] message`` lines on stderr when the
progress bars show (a terminal, or ``--progress``; never with ``--quiet``), every warning of any library (Python's ``warnings`` included), and with
``--verbose`` every INFO line. Lines go through ``tqdm.write``, so a line never lands
inside a progress bar.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from typing import Iterator

from qa_headpose.core.native_stderr import CONSOLE

STATUS_LOGGER = "qa_headpose"


class _BarSafeHandler(logging.Handler):
    """Writes records as one line each through ``tqdm.write`` (above any bar), with the time since start."""

    def __init__(self, command: str, start: float) -> None:
        super().__init__()
        self.command, self.start = command, start

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            message = record.getMessage().strip().splitlines()
            first = message[0] if message else ""
            if record.levelno >= logging.WARNING:
                first = f"{record.levelname.lower()}: {first}"
            line = f"qa-headpose {self.command}: [{time.perf_counter() - self.start:4.0f} s] {first}"
            tqdm.write(line, file=CONSOLE)
        except Exception:  # a handler must never raise into the code that logs
            self.handleError(record)


def setup_logging(command: str, args: argparse.Namespace) -> None:
    """Routes the log as the module docstring says; called once per command, before it runs."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _BarSafeHandler):
            root.removeHandler(handler)
    root.addHandler(_BarSafeHandler(command, time.perf_counter()))
    verbose = getattr(args, "verbose", False)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    from qa_headpose.cli.common import show_progress

    # As the progress bars: on a terminal or with --progress, never with --quiet (a failing command's
    # stderr off a terminal stays its one error line).
    logging.getLogger(STATUS_LOGGER).setLevel(logging.INFO if verbose or show_progress(args) else logging.WARNING)
    # The converter's UserWarnings: a line each, not text inside a bar. Off first: captureWarnings(True) is a
    # no-op while logging believes it captures, even after someone (pytest, catch_warnings) restored showwarning.
    logging.captureWarnings(False)
    logging.captureWarnings(True)


def status(message: str, *args: object) -> None:
    """One status line from a command module (shown as `setup_logging` says)."""
    logging.getLogger(f"{STATUS_LOGGER}.cli").info(message, *args)


@contextlib.contextmanager
def ticking(bar, every: float = 1.0) -> Iterator[None]:
    """Redraws a tqdm ``bar`` every ``every`` seconds inside the block, so its clock moves during a long step."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            bar.refresh()

    thread = threading.Thread(target=tick, name="qa-headpose-bar-clock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
