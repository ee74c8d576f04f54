"""`run_predict`: every input of a `PredictConfig` -> rows and reports, in input order, in one process or N. No TF.

It expands the inputs (`sources.collect_sources`), plans the annotated copies
(`sources.plan_outputs`, checked before any work), builds the estimator once here (so a
bad model fails once, before any worker starts), then runs each input with
`one_input.run_source`, here or in ``jobs`` worker processes (`parallel.run_parallel`),
and hands each row, report and progress step to the caller's callbacks. It never
prints: ``cli/predict.py`` turns rows into the table, JSON and CSV (`formats`).
"""

from __future__ import annotations

from typing import Any, Callable

from qa_headpose.predict.config import PredictConfig, PredictSummary
from qa_headpose.predict.formats import COLUMNS
from qa_headpose.predict.one_input import make_estimator, run_source
from qa_headpose.predict.sources import SourceReport, collect_sources, plan_outputs


def _ignore(_: Any) -> None:
    return None


def run_predict(
    cfg: PredictConfig,
    estimator=None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_source: Callable[[SourceReport], None] | None = None,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> PredictSummary:
    """Runs head-pose prediction over all inputs of ``cfg``.

    Args:
        cfg: the run's `PredictConfig`.
        estimator: a `HeadPoseEstimator` to use; None builds one with `make_estimator`.
            With ``cfg.jobs > 1`` each worker process gets a copy (it pickles as its settings).
        on_row: called with each face's row as soon as it is found (with jobs > 1, in input
            order as each input's result comes back).
        on_source: called with each input's `SourceReport` when it is done (or failed).
        on_progress: called with ("inputs", inputs done, inputs) as inputs finish and, for
            the videos run in this process (jobs 1), with ("frames NAME", frames done, frames
            or None when unknown) after each frame.

    Returns:
        `PredictSummary` with all rows and reports; bad inputs are reported, not raised.

    Raises:
        ModelError: if a model is missing or invalid.
        FileExistsError, ValueError, NotADirectoryError: for outputs that cannot be planned
            (see `plan_outputs`); checked before any work.
        RuntimeError: if ``cfg.jobs > 1`` and the worker processes cannot start: they are
            spawned, so a script calling this with jobs > 1 must guard its entry point
            with ``if __name__ == "__main__":``.
    """
    on_row = on_row or _ignore
    on_source = on_source or _ignore
    progress = on_progress or (lambda stage, done, total: None)
    sources, reports = collect_sources(cfg.inputs, cfg.camera)
    total = len(sources) + len(reports)
    for report in reports:
        on_source(report)
    progress("inputs", len(reports), total)
    plan = plan_outputs(sources, cfg.output, cfg.force)
    rows: list[dict[str, Any]] = []
    if sources and estimator is None:
        estimator = make_estimator(cfg)  # in this process too, so a bad model fails here, once
    jobs = min(cfg.jobs, len(sources))
    if jobs > 1 and cfg.camera is None and not cfg.show:
        from qa_headpose.predict.parallel import run_parallel

        done = run_parallel(estimator, sources, plan, cfg, jobs)
    else:
        done = (
            run_source(estimator, src, plan.get(i), cfg, on_row, lambda n, t, s=src: progress(f"frames {s.name}", n, t))
            for i, src in enumerate(sources)
        )
        jobs = 1
    try:
        for new, report in done:
            if jobs > 1:  # in-process runs call on_row as each face is found
                new = [{key: row[key] for key in COLUMNS} for row in new]  # one copy of each key, not one per row
                for row in new:
                    on_row(row)
            rows += new
            reports.append(report)
            on_source(report)
            progress("inputs", len(reports), total)
    finally:
        done.close()  # now, not at garbage collection: if a callback raised (Ctrl-C), the workers stop here
    return PredictSummary(rows, reports)
