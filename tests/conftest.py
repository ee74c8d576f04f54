"""Shared fixtures: tiny models (32x32, alpha 0.35), tiny real and generated data, no network."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
AFLW_DIR = SHARED_DATA / "AFLW2000"
W300LP_DIR = SHARED_DATA / "300W_LP_sample"
BIWI_DIR = SHARED_DATA / "BIWI_sample"
TINY = 32


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def require(path: Path) -> Path:
    """Skips the test with a clear reason when a ../shared/data folder is absent."""
    if not path.exists():
        pytest.skip(
            f"real data not found at {path} (the research-only data lives in ../shared/data beside the checkout)"
        )
    return path


@pytest.fixture(scope="session")
def aflw_dir() -> Path:
    return require(AFLW_DIR)


@pytest.fixture(scope="session")
def aflw_small(tmp_path_factory, aflw_dir) -> Path:
    """A folder of 24 real AFLW2000 image/.mat pairs (links, not copies, into tmp)."""
    out = tmp_path_factory.mktemp("aflw_small")
    stems = sorted(p.stem for p in aflw_dir.glob("*.jpg"))[:24]
    for stem in stems:
        for suffix in (".jpg", ".mat"):
            (out / f"{stem}{suffix}").symlink_to(aflw_dir / f"{stem}{suffix}")
    return out


@pytest.fixture(scope="session")
def aflw_faces(aflw_small):
    from qa_headpose.datasets.mat import load_mat_folder

    return load_mat_folder(aflw_small)


@pytest.fixture
def tiny_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (8, TINY, TINY, 3), dtype=np.uint8)


def make_synthetic_faces(n: int = 32, size: int = 48, seed: int = 0):
    """A FaceSet whose labels depend on the pixels (a bright blob's position), so a fit can learn."""
    from qa_headpose.datasets.faceset import FaceSet

    rng = np.random.default_rng(seed)
    images, poses = [], []
    for _ in range(n):
        image = np.full((size, size, 3), 60, np.uint8)
        cx, cy = rng.uniform(0.3, 0.7, 2)
        yy, xx = np.mgrid[0:size, 0:size] / size
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01)
        image[..., 1] = np.clip(60 + 190 * blob, 0, 255).astype(np.uint8)
        images.append(image)
        poses.append([(cx - 0.5) * 120, (cy - 0.5) * 80, 0.0])
    box = np.array([size * 0.6 / 2.2, size * 0.6 / 2.2, size * 1.6 / 2.2, size * 1.6 / 2.2], np.float32)
    return FaceSet(images, np.tile(box, (n, 1)), np.array(poses, np.float32), [f"synthetic{i:03d}" for i in range(n)])


@pytest.fixture(scope="session")
def synthetic_faces():
    return make_synthetic_faces()


@pytest.fixture(scope="session")
def tiny_model_config():
    from qa_headpose.training.config import ModelConfig

    return ModelConfig(input_size=TINY, alpha=0.35, dropout=0.0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_faces, tiny_model_config) -> Path:
    """A trained tiny run folder (1 float + 1 QAT epoch on generated faces)."""
    from qa_headpose.training import workflow
    from qa_headpose.training.config import AugmentConfig, QATConfig, TrainConfig

    run = tmp_path_factory.mktemp("tiny_run")
    prepared = workflow.PreparedData(
        synthetic_faces.subset(range(24)), synthetic_faces.subset(range(24, 32)), {"data": []}
    )
    aug = AugmentConfig(flip=True, rotate_deg=10, scale_jitter=0.1, shift_jitter=0.05, photometric=True)
    workflow.train_run(
        run,
        prepared,
        tiny_model_config,
        TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, augment=aug),
        QATConfig(epochs=1, batch_size=8, learning_rate=1e-4, augment=aug),
        verbose=0,
    )
    return run


@pytest.fixture(scope="session")
def tiny_tflite_models(tmp_path_factory, tiny_run, synthetic_faces) -> dict[str, Path]:
    """int8, float32 and dynamic-range .tflite of the tiny run (converted once per session)."""
    from qa_headpose.training import workflow
    from qa_headpose.training.config import ExportConfig

    out = tmp_path_factory.mktemp("tiny_tflite")
    workflow.export_run(tiny_run, out, synthetic_faces, ExportConfig(num_calibration=16))
    return {v: out / f"headpose_{v}.tflite" for v in ("int8", "float32", "dynamic")}


@pytest.fixture(scope="session")
def tiny_int8_tflite(tiny_tflite_models) -> Path:
    return tiny_tflite_models["int8"]


# ---------------------------------------------------------------- qa-headpose serve, for real
def start_server(log_dir: Path, *args: str, timeout: float = 120.0) -> tuple[subprocess.Popen, str, Path]:
    """Starts ``qa-headpose serve --port 0`` and returns (process, base URL, stderr log)."""
    out, err = log_dir / "serve.out", log_dir / "serve.err"
    cmd = [sys.executable, "-m", "qa_headpose.cli", "serve", "--port", "0", *args]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fo, stderr=fe)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if " open http://" in line:
                return proc, line.split(" open ")[1].split()[0], err
        if proc.poll() is not None:
            raise RuntimeError(f"qa-headpose serve exited with {proc.returncode}: {err.read_text()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"qa-headpose serve did not say its URL within {timeout} s: {err.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
