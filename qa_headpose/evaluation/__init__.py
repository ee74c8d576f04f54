"""Evaluating models on labelled faces: metrics by yaw band, predictions of exported models, plots.

No TensorFlow for a ``.tflite`` model; a training run folder's Keras model imports it lazily.
"""

from qa_headpose.evaluation.models import (
    benchmark_eval_data,
    check_model,
    evaluate_model,
    evaluate_on_data,
    model_input_size,
    predict_model,
    select_faces,
)
from qa_headpose.evaluation.plots import plot_errors, plot_reach

__all__ = [
    "benchmark_eval_data",
    "check_model",
    "evaluate_model",
    "evaluate_on_data",
    "model_input_size",
    "plot_errors",
    "plot_reach",
    "predict_model",
    "select_faces",
]
