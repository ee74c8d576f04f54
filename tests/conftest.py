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
    # Slow tests (tf.distribute workers, the load run) run by default, so the README's test command and CI run
    # every feature; --skip-slow is for quick local iterations only.
    parser.addoption("--skip-slow", action="store_true", default=False, help="skip tests marked slow (local use)")


# Session fixtures that train or convert a model: every test that needs one runs in the same xdist worker, so
# the tiny model is trained and exported once per run, not once per worker.
TINY_MODEL_FIXTURES = {"tiny_run", "tiny_tflite_models", "tiny_int8_tflite"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group markers
def pytest_collection_modifyitems(config, items):
    # pyproject's addopts run the suite on 2 xdist workers with --dist loadgroup: a test file is one group (its
    # module fixtures, servers and clusters start once), except that tests of the tiny model form their own.
    for item in items:
        uses_tiny = TINY_MODEL_FIXTURES & set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.xdist_group("tiny-model" if uses_tiny else item.nodeid.split("::")[0]))
    if not config.getoption("--skip-slow"):
        return
    skip = pytest.mark.skip(reason="slow test: skipped by --skip-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    # pytest 9.2 with pytest-xdist 3.8 silently ignores the groups above (pytest-xdist#1386): each heavy fixture
    # would then run in both workers. Refuse to start rather than run slowly and differently.
    dist = getattr(config.option, "dist", "no")
    if dist == "loadgroup" and tuple(int(p) for p in pytest.__version__.split(".")[:2]) >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} breaks pytest-xdist's --dist loadgroup (pytest-xdist#1386); "
            "install the pinned test tools: pip install -e '.[test]'"
        )


MEASURED = "measured"


@pytest.fixture
def measured(record_property):
    """``measured(line)``: a number a test prints and does not assert (a load run, a latency), shown at the end.

    Printed lines of a test are lost on an xdist worker; these travel with the test's report and the
    summary lists them under "measured (printed, not asserted)".
    """
    return lambda line: record_property(MEASURED, line.strip())


def pytest_terminal_summary(terminalreporter):
    lines = [
        f"{report.nodeid.split('::')[-1]}: {value}"
        for report in terminalreporter.getreports("passed")
        for key, value in getattr(report, "user_properties", ())
        if key == MEASURED and report.when == "call"
    ]
    if lines:
        terminalreporter.section("measured (printed, not asserted)")
        for line in lines:
            terminalreporter.write_line(line)


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
    return link_aflw_faces(aflw_dir, slice(24), tmp_path_factory.mktemp("aflw_small"))


def link_aflw_faces(aflw_dir: Path, pick: slice, out: Path) -> Path:
    """Links the image/.mat pairs ``pick`` selects from the sorted AFLW2000 stems into ``out`` (no copies)."""
    for stem in sorted(p.stem for p in aflw_dir.glob("*.jpg"))[pick]:
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

    # BatchNorm's moving statistics follow the last batch (momentum 0): after the 3 steps of a tiny epoch the
    # default 0.9 still holds the initial (0, 1), every activation is cut by ReLU6 and the model answers one
    # constant pose whatever the input, so comparisons through it (TFLite vs Keras, ONNX vs Keras) could not fail.
    return ModelConfig(input_size=TINY, alpha=0.35, dropout=0.0, bn_momentum=0.0)


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
def tiny_int8_tflite(tiny_tflite_models, synthetic_faces) -> Path:
    """The tiny run's full-int8 export: untrained poses, but distinct ones (asserted here).

    Measured on the 32 generated faces: 30 distinct int8 rows, std 2.3 / 2.9 / 2.6 deg per angle (float Keras
    2.0 / 2.8 / 1.9), so a comparison through it compares different numbers; asserted: >= 16 distinct rows and
    std > 1 deg (one int8 step is 0.78 deg) per angle. For real faces with known poses use ``pose_model``.
    """
    from qa_headpose import evaluation

    pred = evaluation.predict_model(tiny_tflite_models["int8"], synthetic_faces.crops(TINY).astype(np.float32))
    assert len({tuple(row) for row in pred}) >= 16 and (pred.std(axis=0) > 1.0).all(), pred.std(axis=0)
    return tiny_tflite_models["int8"]


# ---------------------------------------------------------------- a model with real, distinct outputs
POSE_MODEL = REPO / "qa_headpose" / "models" / "headpose_fast_int8.tflite"
SAMPLE_FACE_BOX = np.array([178, 81, 272, 175], np.float32)  # the face of qa_headpose/assets/astronaut.jpg
POSE_ROTATIONS_DEG = (-30, -15, 0, 15, 30)


@pytest.fixture(scope="session")
def pose_model() -> Path:
    """The shipped `fast` int8 model, for every test that compares poses: it answers real faces with real poses.

    The tiny int8 export (``tiny_int8_tflite``) answers distinct but untrained poses; this one answers real
    faces with real poses.
    """
    return POSE_MODEL


@pytest.fixture(scope="session")
def pose_crops(pose_model) -> list[np.ndarray]:
    """10 face crops of the sample photo, rotated in-plane by -30, -15, 0, 15, 30 deg, then each mirrored.

    Known poses, asserted here on ``pose_model`` (measured: roll 34, 21, 6, -12, -32 deg for the five
    rotations, each mirror's roll within 4 deg of the negation, yaw -4..9, pitch -11..-1): the roll falls as
    the image turns counter-clockwise, a mirror negates the roll, and every two crops' poses differ by at
    least 5.4 deg (asserted > 3; one int8 output step is 0.78 deg), so a comparison through them compares
    different numbers. The crops have different sizes (208 to 246 px: the margin grows with the rotation).
    """
    import cv2

    from qa_headpose.inference import preprocess
    from qa_headpose.inference.registry import SAMPLE_IMAGE
    from qa_headpose.inference.runtime import TFLiteRunner

    image = cv2.imread(str(SAMPLE_IMAGE))
    centre = tuple(float(c) for c in (SAMPLE_FACE_BOX[:2] + SAMPLE_FACE_BOX[2:]) / 2)
    crops = []
    for i, angle in enumerate(POSE_ROTATIONS_DEG):
        turned = cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, angle, 1.0), image.shape[1::-1])
        x0, y0, x1, y1 = preprocess.clipped_pixel_box(SAMPLE_FACE_BOX, preprocess.CROP_MARGIN + 0.05 * i, image.shape)
        crop = np.ascontiguousarray(turned[y0:y1, x0:x1])
        crops += [crop, np.ascontiguousarray(crop[:, ::-1])]
    runner = TFLiteRunner(pose_model, num_threads=1)
    poses = np.concatenate([runner(preprocess.to_model_input(c, runner.input_size)) for c in crops])
    plain, mirrored = poses[0::2], poses[1::2]
    assert np.all(np.diff(plain[:, 2]) < -5), f"roll does not follow the rotation: {plain[:, 2]}"
    assert plain[0, 2] - plain[-1, 2] > 40, f"roll spread too small: {plain[:, 2]}"
    assert np.abs(mirrored[:, 2] + plain[:, 2]).max() < 6, (plain, mirrored)
    gaps = np.abs(poses[:, None] - poses[None]).max(-1) + np.eye(len(poses)) * 1e9
    assert gaps.min() > 3, f"two crops get the same pose: {poses}"
    return crops


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
