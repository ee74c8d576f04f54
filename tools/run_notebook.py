"""Runs notebooks/train_pose_predictor.ipynb headless: the full run to commit, or the fast smoke run.

    python tools/run_notebook.py                            # full mode, about 30 minutes on 2 CPU cores;
                                                            # replaces the committed notebook's outputs
    python tools/run_notebook.py --fast --out /tmp/nb.ipynb # fast mode, a few minutes; the committed
                                                            # notebook is left as it is

Full mode keeps the outputs for the commit: those of cells tagged ``dataset-faces`` (they
draw AFLW2000 faces, which the data's terms keep out of the repository) are removed, the
rest (tables, plots, logs, the sample photo) stay, and the notebook is replaced
atomically, only after every cell ran without error. Fast mode (the notebook's
``FAST = True``: tiny preset, 60 faces, 1 + 1 epochs, int8 only) writes the executed
notebook to ``--out`` and its run folder to ``--run-dir`` (default: a new folder under the
system's temporary directory, so ``runs/`` and ``export_tflite.py``'s "newest run" do not
change). Needs ``pip install -e .[notebook]`` (nbclient, ipykernel) and the AFLW2000 data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


class EchoingClient(nbclient.NotebookClient):
    """A NotebookClient that also writes the cells' printed text (training epochs, progress) to stderr as it comes."""

    def output(self, outs, msg, display_id, cell_index):
        if msg.get("msg_type") == "stream":
            sys.stderr.write(msg["content"].get("text", ""))
            sys.stderr.flush()
        return super().output(outs, msg, display_id, cell_index)


def inject_parameters(nb, source: str, **params: object) -> None:
    """Appends ``NAME = value`` lines to the notebook's first code cell (its parameters), after its defaults."""
    cell = next(c for c in nb.cells if c.cell_type == "code")
    lines = [f"\n# injected by {source}"] + [f"{name} = {value!r}" for name, value in params.items()]
    cell.source += "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    parser.add_argument("--fast", action="store_true", help="the smoke run (FAST = True); needs --out")
    parser.add_argument("--out", type=Path, help="write the executed notebook here; the --notebook file is not changed")
    parser.add_argument("--run-dir", type=Path, help="the run folder (--fast default: a new temporary folder)")
    parser.add_argument("--data", type=Path, help="the AFLW2000 folder (default: the notebook's DATA_DIR)")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.fast and args.out is None:
        parser.error("--fast needs --out: the committed notebook keeps the outputs of a full run")
    if args.out is not None and args.out.resolve() == args.notebook.resolve():
        parser.error("--out is the notebook itself; leave --out out to replace it (full mode)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the kernel inherits it: no TF start-up lines in outputs
    nb = nbformat.read(args.notebook, as_version=4)
    params: dict[str, object] = {}
    if args.data is not None:
        params["DATA_DIR"] = str(args.data.resolve())
    run_dir = args.run_dir
    if run_dir is None and args.fast:
        run_dir = Path(tempfile.mkdtemp(prefix="qa_headpose_notebook_"))
    if run_dir is not None:
        params.update(RUN_DIR=str(run_dir.resolve()), OUT_DIR=str((run_dir / "export").resolve()))
    if args.fast:
        params["FAST"] = True
    if params:
        inject_parameters(nb, "tools/run_notebook.py", **params)
    start = time.perf_counter()
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]

    def announce(cell, cell_index: int) -> None:  # a status line per cell: no long silent stretch
        first = next((line for line in cell.source.splitlines() if line.strip()), "")[:70]
        n = code_cells.index(cell_index) + 1 if cell_index in code_cells else 0
        print(
            f"[{time.perf_counter() - start:5.0f} s] cell {n}/{len(code_cells)}: {first}", file=sys.stderr, flush=True
        )

    client = EchoingClient(
        nb,
        timeout=args.timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(args.notebook.parent)}},
        on_cell_execute=announce,
    )
    mode = "fast" if args.fast else "full"
    where = f" into {run_dir}" if run_dir is not None else ""
    print(f"running {args.notebook.name} in {mode} mode{where} ...", file=sys.stderr, flush=True)
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        print(f"error: a cell failed; {args.notebook} is unchanged: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    stripped = strip_dataset_faces(nb)
    target = args.out if args.out is not None else args.notebook
    if target.parent != Path(""):
        target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, nbformat.writes(nb) + "\n")
    print(
        f"ran {args.notebook.name} in {mode} mode in {time.perf_counter() - start:.0f} s; wrote {target} "
        f"(outputs of {stripped} cells removed)" + (f"; run folder {run_dir}" if run_dir is not None else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
