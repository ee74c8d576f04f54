"""Runs notebooks/train_pose_predictor.ipynb in full mode and keeps its outputs for the commit.

The outputs of cells tagged ``dataset-faces`` (they draw AFLW2000 faces, which the data's
terms keep out of the repository) are removed; the rest (tables, plots, logs, the sample
photo) stay. The notebook is replaced atomically, only after every cell ran without error.

    python tools/run_notebook.py            # about 30 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

from qa_headpose.core.atomic import write_text

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "train_pose_predictor.ipynb"
FACES_TAG = "dataset-faces"


def strip_dataset_faces(nb) -> int:
    """Removes the outputs of the cells tagged `FACES_TAG`; returns how many cells had some."""
    stripped = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and FACES_TAG in cell.metadata.get("tags", []):
            stripped += bool(cell.outputs)
            cell.outputs = []
    return stripped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the kernel inherits it: no TF start-up lines in outputs
    nb = nbformat.read(args.notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(args.notebook.parent)}}
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        print(f"error: a cell failed; {args.notebook} is unchanged: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    stripped = strip_dataset_faces(nb)
    write_text(args.notebook, nbformat.writes(nb) + "\n")
    print(f"ran {args.notebook.name} in {time.perf_counter() - start:.0f} s; removed the outputs of {stripped} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
