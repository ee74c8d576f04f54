"""The ``qa-headpose predict`` command's work, apart from the library in ``inference/``. No TF.

Read in this order: `config` (`PredictConfig`, `PredictSummary`, exit statuses) ->
`run` (`run_predict`: inputs -> rows and reports, in input order) -> `one_input` (one
image or video: decode, detect, pose, track, draw) -> `parallel` (``--jobs N`` worker
processes) -> `formats` (`COLUMNS`, the terminal table, CSV, JSON); `ray_data` runs the
same per-image work on a Ray cluster (the optional ``[ray]`` extra).

    from qa_headpose.predict import PredictConfig, run_predict
    summary = run_predict(PredictConfig(inputs=("photos/",), jobs=2))  # guard with if __name__ == "__main__"
"""

from __future__ import annotations

from qa_headpose.predict.config import STATUS_FAILED, STATUS_OK, STATUS_PARTIAL, PredictConfig, PredictSummary
from qa_headpose.predict.formats import COLUMNS
from qa_headpose.predict.run import run_predict

__all__ = [
    "COLUMNS",
    "STATUS_FAILED",
    "STATUS_OK",
    "STATUS_PARTIAL",
    "PredictConfig",
    "PredictSummary",
    "run_predict",
]
