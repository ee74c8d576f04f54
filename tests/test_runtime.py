import subprocess
import sys

import numpy as np
import pytest

from qa_headpose.runtime import ModelError, TFLiteRunner


def test_runner_batches_and_is_deterministic(tiny_int8_tflite, tiny_images):
    runner = TFLiteRunner(tiny_int8_tflite, num_threads=2)
    x = tiny_images.astype(np.float32)
    batch = runner(x)
    single = np.concatenate([runner(x[i : i + 1]) for i in range(len(x))])
    assert batch.shape == (8, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, single, atol=1e-6)
    # Outputs lie on the int8 grid of 0.78125 degrees.
    np.testing.assert_allclose(batch / (100 / 128), np.round(batch / (100 / 128)), atol=1e-4)


def test_quantize_round_trip(tiny_int8_tflite):
    runner = TFLiteRunner(tiny_int8_tflite)
    pixels = np.array([0.0, 1.0, 127.0, 128.0, 255.0], np.float32)
    q = runner.quantize_input(pixels)
    assert q.dtype == np.int8 and q.tolist() == [-128, -127, -1, 0, 127]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, 31, 32, 3), np.float32),
        np.zeros((0, 32, 32, 3), np.float32),
        np.full((1, 32, 32, 3), np.nan, np.float32),
    ],
)
def test_runner_rejects_bad_input(tiny_int8_tflite, bad):
    with pytest.raises(ValueError):
        TFLiteRunner(tiny_int8_tflite)(bad)


def test_bad_model_files(tmp_path, tiny_int8_tflite):
    with pytest.raises(ModelError, match="not found"):
        TFLiteRunner(tmp_path / "missing.tflite")
    (tmp_path / "garbage.tflite").write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelError, match="Not a valid"):
        TFLiteRunner(tmp_path / "garbage.tflite")
    (tmp_path / "cut.tflite").write_bytes(tiny_int8_tflite.read_bytes()[:5000])
    with pytest.raises(ModelError):
        TFLiteRunner(tmp_path / "cut.tflite")
    with pytest.raises(ValueError, match="num_threads"):
        TFLiteRunner(tiny_int8_tflite, num_threads=0)


def test_tf_lite_fallback_gives_same_numbers(tiny_int8_tflite, tiny_images):
    x = tiny_images.astype(np.float32)
    np.testing.assert_allclose(
        TFLiteRunner(tiny_int8_tflite, prefer="tf")(x), TFLiteRunner(tiny_int8_tflite)(x), atol=1e-6
    )


def test_runtime_does_not_import_tensorflow(tiny_int8_tflite):
    code = (
        "import sys, numpy as np; from qa_headpose.runtime import TFLiteRunner; "
        f"r = TFLiteRunner({str(tiny_int8_tflite)!r}); r(np.zeros((1, 32, 32, 3), np.float32)); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
