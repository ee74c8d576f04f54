"""notebooks/train_pose_predictor.ipynb: in sync with its script, committed with a full run's outputs, runs in fast mode.

The source is notebooks/train_pose_predictor.py (jupytext percent format); the .ipynb is
generated from it (``jupytext --sync``). The run executes every cell with nbclient in a kernel
of this Python (the ``python3`` kernelspec; jupyter_client starts it with ``sys.executable``)
on real AFLW2000 faces: tiny preset, 60 faces, 1 float + 1 QAT epoch, int8 export only
(about 2-3 minutes on 2 CPU cores, most of it the int8 conversion). It is skipped without
../shared/data/AFLW2000. The committed outputs come from a full-mode run (tools/run_notebook.py),
without those of the cells that draw AFLW2000 faces.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO / "notebooks" / "train_pose_predictor.ipynb"
SCRIPT = NOTEBOOK.with_suffix(".py")
CELL_TIMEOUT_S = 600
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FACES_TAG = "dataset-faces"  # cells that draw AFLW2000 faces: committed without outputs


def _has(module: str) -> bool:
    return importlib.util.find_spec(f"qa_headpose.{module}") is not None


def _cells(nb) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_notebook_is_in_sync_with_its_script(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    fresh = tmp_path / NOTEBOOK.name
    jupytext.write(jupytext.read(SCRIPT), fresh)  # what `jupytext --to ipynb` writes
    committed = nbformat.read(NOTEBOOK, as_version=4)
    hint = f"edit {SCRIPT.name}, then run jupytext --sync notebooks/{SCRIPT.name} and commit both"
    assert _cells(committed) == _cells(nbformat.read(fresh, as_version=4)), hint
    assert committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"


def test_notebook_parameters_come_first():
    code = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for name in ("DATA_DIR", "RUN_DIR", "OUT_DIR", "FAST", "PRESET", "EPOCHS", "QAT_EPOCHS", "INPUT_SIZE", "ALPHA"):
        assert f"\n{name} = " in "\n" + code[0].source, name


def test_committed_outputs_come_from_a_full_run_and_show_no_dataset_faces():
    """The committed notebook shows a real full-mode run (tools/run_notebook.py), AFLW2000 faces left out."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    faces = [c for c in code if FACES_TAG in c.metadata.get("tags", [])]
    # Every cell that draws dataset crops is tagged, and the tagged cells carry no output.
    draws_crops = [c for c in code if ".crops(" in c.source and "imshow" in c.source]
    assert draws_crops and all(FACES_TAG in c.metadata.get("tags", []) for c in draws_crops)
    assert all(not c.outputs for c in faces)
    ran = [c for c in code if c not in faces]
    assert all(c.execution_count for c in ran), "run the notebook with tools/run_notebook.py"
    assert not [o for c in ran for o in c.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for c in ran for o in c.outputs if o.output_type == "stream")
    # It says when and where it ran, and that this was the full mode.
    assert re.search(r"^run \d{4}-\d\d-\d\d \d\d:\d\d .+ \(\d+ cores, .+\), Python [\d.]+, full mode$", text, re.M)
    images = [c for c in ran if any("image/png" in o.get("data", {}) for o in c.outputs)]
    figures = {"training_curves", "errors_png", "latency_png", "sample_prediction"}
    assert {name for name in figures if any(name in c.source for c in images)} == figures


def _kernel_name() -> str:
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(NATIVE_KERNEL_NAME)
    except NoSuchKernel:
        pytest.skip(f"no '{NATIVE_KERNEL_NAME}' Jupyter kernel: pip install ipykernel")
    if spec.language != "python":
        pytest.skip(f"the '{NATIVE_KERNEL_NAME}' kernel is not a Python kernel: {spec.argv}")
    return NATIVE_KERNEL_NAME


def _run_notebook():
    """tools/run_notebook.py as a module (the one home of the parameter injection)."""
    spec = importlib.util.spec_from_file_location("run_notebook", REPO / "tools" / "run_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--fast"], "--fast needs --out"),
        (["--fast", "--out", str(NOTEBOOK)], "--out is the notebook itself"),
    ],
)
def test_run_notebook_never_overwrites_the_committed_notebook_with_a_fast_run(argv, message, capsys):
    before = NOTEBOOK.read_bytes()
    with pytest.raises(SystemExit) as exc:
        _run_notebook().main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert NOTEBOOK.read_bytes() == before


def test_run_notebook_echoes_what_cells_print(capsys):
    """A long cell (training) is not silent: its printed lines reach stderr as they come, and the notebook keeps them."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('x')")])
    client = _run_notebook().EchoingClient(nb)
    client.reset_execution_trackers()  # what execute() and each cell do first
    client.clear_before_next_output = False
    msg = {
        "msg_type": "stream",
        "header": {"msg_type": "stream"},
        "parent_header": {},
        "content": {"name": "stdout", "text": "Epoch 1/12\n"},
    }
    outs = []
    client.output(outs, msg, None, 0)
    assert capsys.readouterr().err == "Epoch 1/12\n"
    assert [o["text"] for o in outs] == ["Epoch 1/12\n"]


def test_notebook_default_run_is_not_the_newest_run_export_picks():
    """The notebook trains into ../runs/notebook by default; `newest_run` leaves that folder out."""
    from qa_headpose.bench.models import NOTEBOOK_RUN

    params = next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code").source
    assert re.search(rf'^RUN_DIR = "\.\./runs/{NOTEBOOK_RUN}"', params, re.M)


def test_notebook_runs_in_fast_mode(aflw_dir, tmp_path):
    kernel = _kernel_name()
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The notebook's own defaults first, so a parameter added later still has a value.
    _run_notebook().inject_parameters(
        nb, "tests/test_notebook.py", DATA_DIR=str(aflw_dir), RUN_DIR=str(run_dir), OUT_DIR=str(out_dir), FAST=True
    )
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # the kernel starts in notebooks/, as in Jupyter
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # kept in tmp for a look after a failure
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a cell did not run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert "Traceback" not in text

    for name in ("config.json", "summary.json", "float/log.csv", "float/best.weights.h5", "qat/best.weights.h5"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["model"]["input_size"] == 32  # the tiny preset
    int8 = out_dir / "headpose_int8.tflite"
    assert int8.stat().st_size > 0 and json.loads(int8.with_suffix(".json").read_text())["fully_int8"]
    assert not (out_dir / "headpose_float32.tflite").exists()  # fast mode exports int8 only

    figures = ["training_curves", "errors_vs_yaw", "data_crops", "worst_faces"]
    if _has("bench"):
        figures.append("latency_vs_threads")
        assert json.loads((out_dir / "benchmark.json").read_text())["results"]
    else:
        print("qa_headpose.bench is missing: the benchmark section was skipped", file=sys.stderr)
    if _has("inference.draw") and _has("inference.detect") and _has("inference.registry"):
        figures.append("sample_prediction")
    for name in figures:
        png = out_dir / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == PNG_SIGNATURE, name
