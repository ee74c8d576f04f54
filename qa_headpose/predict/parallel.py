"""``predict --jobs N``: the inputs spread over N worker processes, results back in input order. No TF.

Each worker builds its own estimator once (from the parent's, pickled as its settings)
and runs `one_input.run_source` on the inputs it is sent, a few images per task
(`task_size`). At most `IN_FLIGHT_PER_JOB` tasks per worker are submitted and not yet
yielded, so memory stays flat however many inputs there are. Workers run OpenCV on one
thread: the processes are the parallelism, and OpenCV's own pool would oversubscribe
the cores. A worker that dies (a crash in native code, the OOM killer) costs no
other input: the inputs in flight then run again one at a time in a fresh pool, so only
the input that kills a worker on its own is reported as failed. Ctrl-C (or an error in
the caller) ends the workers at once; an input in progress removes its partial file.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterator

from qa_headpose.core.native_stderr import native_stderr_silenced
from qa_headpose.predict.config import PredictConfig
from qa_headpose.predict.one_input import run_source
from qa_headpose.predict.sources import Source, SourceReport

# Tasks in flight per worker process: enough to keep each busy, few enough for flat memory.
IN_FLIGHT_PER_JOB = 2
# Most images per task: one task costs a message each way, a future and a wake-up of the parent,
# so one per image would spend a noticeable part of the parent's (and the cores') time on them.
MAX_TASK_SIZE = 8
# Longest wait for every worker to start (spawn, imports, models) before the run gives up.
START_TIMEOUT_S = 120.0
# The error of an input that killed a worker while running alone.
WORKER_DIED = "a worker process died while reading this input (a crash in a decoder, or out of memory)"

# The estimator and config of a worker process, set once by `_init_worker`.
_WORKER: dict[str, Any] = {}


def _ignore(_: Any) -> None:
    return None


def _init_worker(estimator_pickle: bytes, cfg: PredictConfig, started: Any) -> None:
    """Builds the worker's own estimator (loading its models); Ctrl-C is the parent's to handle."""

    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    with native_stderr_silenced():
        _WORKER["estimator"] = pickle.loads(estimator_pickle)
    _WORKER["cfg"] = cfg
    _WORKER["started"] = started


def _watch_parent(parent: int) -> None:
    # A worker whose parent was killed would otherwise wait for work forever.
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigterm(signum: int, frame: Any) -> None:
    # The parent stops the run: an input in progress unwinds (its partial output file is
    # removed on the way); an idle worker just ends.
    if _WORKER.get("busy"):
        _WORKER["stopping"] = True
        raise KeyboardInterrupt
    os._exit(0)


def _work(task: list[tuple[Source, Path | None]]) -> list[tuple[list[dict[str, Any]], SourceReport]]:
    _WORKER["busy"] = True
    try:
        return [run_source(_WORKER["estimator"], src, out, _WORKER["cfg"], _ignore) for src, out in task]
    finally:
        _WORKER["busy"] = False
        if _WORKER.get("stopping"):  # unwound and cleaned up; nobody waits for the result
            os._exit(0)


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    """Ends a pool now (after Ctrl-C or an error here), and returns once every worker is reaped.

    The pool's manager thread reaps the workers, so this waits for it rather than joining them too
    (two threads waiting on one child race; the loser sees a dead worker as alive). The pool's own
    dict of workers, not a copy: a worker started while the pool shuts down is ended too.
    """
    workers = getattr(executor, "_processes", None) or {}
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    for process in list(workers.values()):
        if process.is_alive():
            process.terminate()
    if manager is not None:
        manager.join(timeout=10)
    for process in list(workers.values()):
        if process.exitcode is None:  # still running after 10 s (stuck in native code): no more waiting
            process.kill()
            process.join()
    if manager is not None:
        manager.join()


def _ready() -> bool:
    # Each of the N start-up calls holds its worker until all N workers have started. A pool with the spawn
    # method starts workers on demand and only when none is idle; without this rendezvous, tasks sent one at a
    # time as results come back were all taken by the first worker and --jobs 2 ran on one core.
    _WORKER["started"].wait(timeout=START_TIMEOUT_S)
    return "estimator" in _WORKER


def _start_pool(jobs: int, context: Any, payload: bytes, cfg: PredictConfig) -> ProcessPoolExecutor:
    """A process pool whose workers have started and built their estimators.

    Raises:
        RuntimeError: if the workers cannot start, e.g. when the program that calls
            `run_predict` does not guard its entry point with ``if __name__ == "__main__":``
            (each spawned worker imports the main module).
    """
    started = context.Barrier(jobs)
    executor = ProcessPoolExecutor(jobs, context, initializer=_init_worker, initargs=(payload, cfg, started))
    try:
        for ready in [executor.submit(_ready) for _ in range(jobs)]:
            ready.result()
    except (BrokenProcessPool, threading.BrokenBarrierError):
        executor.shutdown(wait=True, cancel_futures=True)
        raise RuntimeError(
            "The worker processes of jobs > 1 could not start; a script that calls run_predict with jobs > 1 "
            'must guard its entry point with `if __name__ == "__main__":`'
        ) from None
    return executor


def _next_task(queue: deque[int], sources: list[Source], suspects: set[int], size: int) -> list[int]:
    """The next inputs to send as one task: a suspect or a video alone, else up to ``size`` images in order."""
    if queue[0] in suspects or sources[queue[0]].kind != "image":
        return [queue.popleft()]
    task = [queue.popleft()]
    while queue and len(task) < size and queue[0] not in suspects and sources[queue[0]].kind == "image":
        task.append(queue.popleft())
    return task


def _tasks_to_send(
    queue: deque[int],
    sources: list[Source],
    suspects: set[int],
    size: int,
    in_flight: int,
    last: list[int] | None,
    window: int,
) -> list[list[int]]:
    """The tasks to submit now (taken off ``queue``): enough to have ``window`` in flight.

    A suspect (in flight when a worker died) runs alone: it waits until nothing else is in flight,
    and nothing is sent after it until it is done. ``last`` is the newest task in flight, if any.
    """
    tasks: list[list[int]] = []
    while queue and in_flight + len(tasks) < window:
        previous = tasks[-1] if tasks else last
        alone = queue[0] in suspects or (previous is not None and previous[0] in suspects)
        if alone and (in_flight or tasks):
            break
        tasks.append(_next_task(queue, sources, suspects, size))
        if alone:
            break
    return tasks


def task_size(inputs: int, jobs: int) -> int:
    """Images per task: up to `MAX_TASK_SIZE`, and at least `IN_FLIGHT_PER_JOB` tasks per worker overall."""
    return max(1, min(MAX_TASK_SIZE, inputs // (jobs * IN_FLIGHT_PER_JOB * 4)))


def run_parallel(
    estimator, sources: list[Source], plan: dict[int, Path], cfg: PredictConfig, jobs: int
) -> Iterator[tuple[list[dict[str, Any]], SourceReport]]:
    """`one_input.run_source` of every input in ``jobs`` worker processes; yields in input order.

    Images go in tasks of `task_size` consecutive inputs (one message each way per task,
    not per image); a video is a task of its own.

    Args:
        estimator: the parent's `HeadPoseEstimator`; each worker builds its own from its settings.
        sources: the inputs.
        plan: {index into sources: annotated output path} (`sources.plan_outputs`).
        cfg: the run's `PredictConfig`.
        jobs: worker processes.

    Yields:
        (rows, report) of each input, in input order.

    Raises:
        RuntimeError: if the worker processes cannot start (`_start_pool`).
    """
    import multiprocessing

    # spawn: a worker inherits no threads, locks or interpreters of this process.
    context = multiprocessing.get_context("spawn")
    payload = pickle.dumps(estimator)
    size = task_size(len(sources), jobs)
    window = IN_FLIGHT_PER_JOB * jobs
    queue = deque(range(len(sources)))  # not submitted yet
    pending: deque[tuple[list[int], Future]] = deque()  # submitted tasks, in input order
    suspects: set[int] = set()  # in flight when a worker died: each now runs alone
    executor: ProcessPoolExecutor | None = None
    try:
        while queue or pending:
            if executor is None:
                executor = _start_pool(jobs, context, payload, cfg)
            last = pending[-1][0] if pending else None
            for task in _tasks_to_send(queue, sources, suspects, size, len(pending), last, window):
                pending.append((task, executor.submit(_work, [(sources[i], plan.get(i)) for i in task])))
            task, future = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                executor.shutdown(wait=True, cancel_futures=True)
                executor = None
                lost = task + [i for t, _ in pending for i in t]
                pending.clear()
                if lost[0] in suspects:  # it killed a worker while running alone
                    src = sources[lost[0]]
                    yield [], SourceReport(src.name, src.kind, error=WORKER_DIED)
                    lost = lost[1:]
                suspects.update(lost)
                queue.extendleft(reversed(lost))
                continue
            yield from results
    except BaseException:  # Ctrl-C, or the caller stopped (an exception in on_row) while work was in flight
        if executor is not None:
            _stop_workers(executor)
            executor = None
        raise
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
