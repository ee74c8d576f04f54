"""LiteRT interpreters: loading a .tflite (path or bytes) and a bounded pool of them. No TF.

A LiteRT interpreter holds its input and output tensors, so two threads must never use
one at the same time. `InterpreterPool` lends each concurrent caller an interpreter of
its own (created on demand, up to a bound); `runtime.TFLiteRunner` and
`detect.FaceDetector` are built on it, which is what makes them thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

from qa_headpose.core.errors import ModelError


def default_max_concurrency() -> int:
    """The default bound of an `InterpreterPool`: the number of CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_max_concurrency(max_concurrency: int | None) -> int:
    """``max_concurrency`` as an int >= 1 (None: `default_max_concurrency`).

    Raises:
        ValueError: if it is < 1.
    """
    if max_concurrency is None:
        return default_max_concurrency()
    if int(max_concurrency) < 1:
        raise ValueError(f"max_concurrency must be >= 1. Received: max_concurrency={max_concurrency}")
    return int(max_concurrency)


T = TypeVar("T")


class InterpreterPool(Generic[T]):
    """A bounded pool of interchangeable, non-thread-safe objects (interpreters), one per concurrent caller.

    `borrow` hands the calling thread an idle object, creates one with ``factory`` when
    none is idle and fewer than ``max_size`` exist, and otherwise waits until another
    caller gives one back. Thread-safe; an object is only ever used by one thread at a time.

    Args:
        factory: makes a new object (called without the pool's lock held).
        max_size: most objects that will ever exist (>= 1).
        first: an object already made (e.g. the one a constructor checked), or None.
    """

    def __init__(self, factory: Callable[[], T], max_size: int, first: T | None = None) -> None:
        if int(max_size) < 1:
            raise ValueError(f"max_size must be >= 1. Received: max_size={max_size}")
        self.max_size = int(max_size)
        self._factory = factory
        self._idle: list[T] = [] if first is None else [first]
        self._created = len(self._idle)
        self._cond = threading.Condition(threading.Lock())

    @property
    def size(self) -> int:
        """How many objects exist now (idle or lent)."""
        with self._cond:
            return self._created

    @contextlib.contextmanager
    def borrow(self) -> Iterator[T]:
        """Lends an object for the ``with`` block; it goes back to the pool afterwards, even on error."""
        with self._cond:
            while not self._idle and self._created >= self.max_size:
                self._cond.wait()
            item = self._idle.pop() if self._idle else None
            if item is None:
                self._created += 1  # reserve the slot; the object is made outside the lock
        if item is None:
            try:
                item = self._factory()
            except BaseException:
                with self._cond:
                    self._created -= 1
                    self._cond.notify()
                raise
        try:
            yield item
        finally:
            with self._cond:
                self._idle.append(item)
                self._cond.notify()


def read_model(model: str | os.PathLike | bytes) -> tuple[bytes, str]:
    """The bytes of a .tflite (a path or the bytes themselves) and a name for messages.

    Raises:
        ModelError: if the file is missing, unreadable or too small to be a model.
    """
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "<bytes>"
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"Model file not found: {path}")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"Cannot read model {path}: {exc.strerror or exc}") from None
    if len(content) < 16:
        raise ModelError(f"Not a TFLite model (file too small): {path}")
    return content, str(path)


def load_interpreter(
    model: str | os.PathLike | bytes,
    num_threads: int = 1,
    interpreter_cls: Callable[..., Any] | None = None,
    name: str | None = None,
) -> Any:
    """Creates a LiteRT interpreter (this package never imports TensorFlow for inference).

    An interpreter is not thread-safe: use one from one thread at a time (`InterpreterPool`).

    Args:
        model: path to a .tflite file, or its bytes.
        num_threads: CPU threads of the interpreter (>= 1).
        interpreter_cls: the interpreter class; None for ``ai_edge_litert.interpreter.Interpreter``.
            Any class with its constructor (``model_content``, ``num_threads``) fits, e.g. the
            deprecated ``tf.lite.Interpreter`` that the benchmark measures as an extra engine.
        name: what error messages call the model (default: its path, or "<bytes>").

    Returns:
        An interpreter with its tensors allocated.

    Raises:
        ModelError: if the file is missing or not a valid TFLite model.
        ValueError: if num_threads < 1.
        ImportError: if ai_edge_litert is not installed.
    """
    if int(num_threads) < 1:
        raise ValueError(f"num_threads must be >= 1. Received: num_threads={num_threads}")
    if interpreter_cls is None:
        interpreter_cls = _litert_interpreter()
    content, what = read_model(model)
    try:
        # From bytes, not a path: every interpreter of a pool then runs the very same model,
        # even if the file is replaced while the program runs.
        interpreter = interpreter_cls(model_content=content, num_threads=int(num_threads))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"Not a valid TFLite model: {name or what} ({first})") from None
    return interpreter


def _litert_interpreter() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError("LiteRT is not installed: `pip install ai-edge-litert`.") from None
    return Interpreter
