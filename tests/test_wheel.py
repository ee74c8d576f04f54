"""The wheel is slim and works on its own: built, installed into a fresh venv outside the checkout, run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

WHEEL_LIMIT_BYTES = 6_000_000


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    got = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    (path,) = out.glob("qa_headpose-*.whl")
    return path


def test_wheel_carries_what_inference_needs_and_nothing_else(wheel):
    assert wheel.stat().st_size <= WHEEL_LIMIT_BYTES, f"{wheel.stat().st_size / 1e6:.2f} MB"
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "qa_headpose/models/headpose_accurate_int8.tflite",
        "qa_headpose/models/headpose_fast_int8.tflite",
        "qa_headpose/models/face_detection_short_range.tflite",
        "qa_headpose/models/mediapipe_face_detection.LICENSE",
        "qa_headpose/models/MODEL_CARD_accurate.md",
        "qa_headpose/assets/astronaut.jpg",
        "qa_headpose/serve/static/index.html",
    ):
        assert needed in names, needed
    # Float weights and float32 models stay in the repository (weights/), never in the wheel.
    assert not [n for n in names if n.endswith(".h5") or "float32" in n or n.startswith("weights/")]


def _site_dirs() -> list[str]:
    """The running interpreter's site-packages folders (a venv's, a system's, the user's), never the checkout."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


@pytest.fixture(scope="module")
def wheel_venv(wheel, tmp_path_factory) -> Path:
    """A venv from the bare base interpreter, with the wheel installed and its dependencies taken from this one.

    No ``--system-site-packages``: the base interpreter may have nothing installed. A ``.pth`` puts this
    interpreter's site-packages after the venv's own, so pip resolves the wheel's requirements there
    (``--no-index``: nothing is downloaded; a requirement missing here fails the install) and the
    wheel's own ``qa_headpose`` comes first on the path.
    """
    venv = tmp_path_factory.mktemp("wheel_venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "zz_running_site_packages.pth").write_text("\n".join(_site_dirs()) + "\n")
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    return venv


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def test_the_installed_wheel_predicts_outside_the_checkout(wheel_venv, tmp_path):
    python = str(wheel_venv / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import qa_headpose; print(qa_headpose.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
    )
    assert where.stdout.strip().startswith(str(wheel_venv)), where.stdout + where.stderr
    got = subprocess.run(
        [str(wheel_venv / "bin" / "qa-headpose"), "predict", "--model", "fast", "--json", "-"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=_clean_env(),
    )
    assert got.returncode == 0, got.stderr[-2000:]
    faces = json.loads(got.stdout)["faces"]
    assert len(faces) == 1 and abs(faces[0]["yaw"]) < 20


def test_a_missing_dependency_is_one_line_naming_the_pip_command(wheel_venv, tmp_path):
    """OpenCV absent (a None in sys.modules makes its import fail as if uninstalled): exit 1, not a usage error."""
    code = "import sys; sys.modules['cv2'] = None; from qa_headpose.cli import main; sys.exit(main())"
    got = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", code, "predict", "--model", "fast"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=_clean_env(),
    )
    assert got.returncode == 1, got.stderr
    assert got.stderr.count("\n") == 1 and "Traceback" not in got.stderr, got.stderr
    assert "qa-headpose predict: error: missing dependency" in got.stderr
    assert "pip install 'opencv-python-headless>=4.9'" in got.stderr, got.stderr
