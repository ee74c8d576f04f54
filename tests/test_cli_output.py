"""What the commands print besides their results: no TensorFlow noise unless --verbose, status lines, bars.

- `core.native_stderr.filtered` hides the native lines that match and keeps the rest; `CONSOLE`
  still reaches the real stderr inside it (progress bars keep moving).
- Importing the training side prints none of TensorFlow's start-up block (a fresh process).
- `cli.status.setup_logging` shows the library's INFO log as status lines when bars show, never with
  --quiet, and a warning as one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import warnings

import pytest
from conftest import REPO

from qa_headpose.cli.main import build_parser
from qa_headpose.cli.status import setup_logging
from qa_headpose.core.native_stderr import CONSOLE, TF_NOISE, filtered

NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796293399.439261    4679 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
    "E0000 00:00:1796293412.054108    4679 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
    "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
)


def test_filtered_hides_the_noise_keeps_other_native_lines_and_the_console(capfd):
    with filtered(TF_NOISE):
        os.write(2, (NOISE + "a real native error\n").encode())
        CONSOLE.write("a progress bar\n")
        CONSOLE.flush()
    err = capfd.readouterr().err
    assert err.splitlines() == ["a progress bar", "a real native error"]


def test_filtered_off_passes_everything(capfd):
    with filtered(TF_NOISE, enabled=False):
        os.write(2, NOISE.encode())
    assert capfd.readouterr().err == NOISE


def _import_training(verbose: bool) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("QA_HEADPOSE_VERBOSE", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if verbose:
        env["QA_HEADPOSE_VERBOSE"] = "1"
    code = "import qa_headpose.training.qat, qa_headpose.training.export; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    return result.stderr


def test_importing_tensorflow_prints_no_start_up_block():
    pytest.importorskip("tensorflow")
    err = _import_training(verbose=False)
    assert [line for line in err.splitlines() if TF_NOISE.search(line)] == [], err


def test_verbose_flag_on_every_command_and_on_data_subcommands():
    parser = build_parser()
    assert parser.parse_args(["train", "--out", "r", "--verbose"]).verbose
    assert parser.parse_args(["data", "crop", "src", "--out", "x.npz", "--verbose"]).verbose
    assert not parser.parse_args(["predict"]).verbose
    help_text = parser._subparsers._group_actions[0].choices["export"].format_help()
    assert "--verbose" in help_text


def _log_as_command(capsys, **flags) -> str:
    args = argparse.Namespace(**{"verbose": False, "quiet": False, "progress": False, **flags})
    setup_logging("export", args)
    try:
        logging.getLogger("qa_headpose.training.workflow").info("int8: converting")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("Statistics for quantized inputs were expected", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    return capsys.readouterr().err


def test_status_lines_show_with_progress_and_never_with_quiet(capsys):
    shown = _log_as_command(capsys, progress=True).splitlines()
    assert shown[0].startswith("qa-headpose export: [") and shown[0].endswith("s] int8: converting")
    assert len(shown) == 2 and "warning:" in shown[1] and "Statistics for quantized inputs" in shown[1]
    quiet = _log_as_command(capsys, quiet=True).splitlines()
    assert len(quiet) == 1 and "Statistics" in quiet[0]  # a warning still shows, as one line
