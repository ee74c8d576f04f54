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


def test_the_installed_wheel_predicts_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the venv, not a checkout on the path
    # System site-packages give numpy, OpenCV and LiteRT without a download; the wheel's own
    # qa_headpose in the venv comes first on the path, ahead of the checkout's editable install.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    # --ignore-installed: the checkout's editable install of the same version is visible through the system
    # site-packages, and pip would otherwise call the requirement satisfied and install nothing.
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import qa_headpose; print(qa_headpose.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    got = subprocess.run(
        [str(venv / "bin" / "qa-headpose"), "predict", "--model", "fast", "--json", "-"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    faces = json.loads(got.stdout)["faces"]
    assert len(faces) == 1 and abs(faces[0]["yaw"]) < 20
