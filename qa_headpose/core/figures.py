"""Matplotlib for the package's PNG reports: headless, imported on first use, written atomically."""

from __future__ import annotations

import os
from typing import Any

from qa_headpose.core.atomic import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed).

    Raises:
        ImportError: if matplotlib is not installed, saying what to install.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("Plots need matplotlib: `pip install matplotlib`") from None
    return plt


def save_png(fig: Any, path: str | os.PathLike, dpi: int = 100) -> None:
    """Writes ``fig`` as a PNG through `atomic_path` and closes it, also when saving fails."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
