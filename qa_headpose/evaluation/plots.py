"""Figures of a model's errors: error by labelled yaw, and reach (predicted against labelled yaw). matplotlib."""

from __future__ import annotations

import os

import numpy as np

from qa_headpose.core import angles
from qa_headpose.core.figures import pyplot, save_png


def plot_errors(pred: np.ndarray, true: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """Absolute error vs ground-truth yaw (10-degree bins), one line per angle, as a PNG."""
    plt = pyplot()
    err = np.abs(pred - true)
    edges = np.arange(-100, 101, 10)
    centers = (edges[:-1] + edges[1:]) / 2
    which = np.digitize(true[:, 0], edges) - 1
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(angles.ANGLE_ORDER):
        means = [err[which == b, i].mean() if np.any(which == b) else np.nan for b in range(len(centers))]
        ax.plot(centers, means, marker="o", label=f"{name} (MAE {err[:, i].mean():.2f})")
    ax.set_xlabel("ground-truth yaw (degrees)")
    ax.set_ylabel("mean absolute error (degrees)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def plot_reach(pred: np.ndarray, true: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """Predicted against labelled yaw, every face and the mean per labelled yaw (5-degree bins), as a PNG.

    A calibrated model follows the diagonal; one that compresses profiles bends below it at large |yaw|.
    """
    plt = pyplot()
    true_yaw, pred_yaw = np.asarray(true)[:, 0], np.asarray(pred)[:, 0]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(true_yaw, pred_yaw, s=4, alpha=0.25, color="tab:blue", label="faces")
    centres = np.unique(np.round(true_yaw / 5) * 5)
    means = [pred_yaw[np.round(true_yaw / 5) * 5 == c].mean() for c in centres]
    ax.plot(centres, means, marker="o", color="tab:red", label="mean per labelled yaw")
    ax.plot([-100, 100], [-100, 100], color="gray", lw=1, ls="--", label="predicted = labelled")
    ax.set_xlim(-100, 100)
    ax.set_ylim(-100, 100)
    ax.set_xlabel("labelled yaw (degrees)")
    ax.set_ylabel("predicted yaw (degrees)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_png(fig, path)
