import subprocess
import sys

import numpy as np
import pytest

from qa_headpose.core.errors import ModelError
from qa_headpose.inference.runtime import TFLiteRunner


def _pose_batch(runner: TFLiteRunner, crops: list[np.ndarray]) -> np.ndarray:
    from qa_headpose.inference.preprocess import to_model_input

    return to_model_input(crops, runner.input_size)


def test_runner_batches_and_is_deterministic(pose_model, pose_crops):
    runner = TFLiteRunner(pose_model, num_threads=2)
    x = _pose_batch(runner, pose_crops)
    batch = runner(x)
    single = np.concatenate([runner(x[i : i + 1]) for i in range(len(x))])
    assert batch.shape == (10, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, single, atol=1e-6)
    # Outputs lie on the int8 grid of 0.78125 degrees.
    np.testing.assert_allclose(batch / (100 / 128), np.round(batch / (100 / 128)), atol=1e-4)


def test_quantize_round_trip(pose_model):
    runner = TFLiteRunner(pose_model)
    pixels = np.array([0.0, 1.0, 127.0, 128.0, 255.0], np.float32)
    q = runner.quantize_input(pixels)
    assert q.dtype == np.int8 and q.tolist() == [-128, -127, -1, 0, 127]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_quantize_rounds_shifts_and_saturates(dtype):
    """q = clip(round(x / scale + zero_point)) with a scale and zero point that are neither 1 nor 0."""
    from qa_headpose.inference.runtime import dequantize, quantize

    info = np.iinfo(dtype)
    scale, zero_point = 0.5, 3 if dtype != np.uint8 else 131
    x = np.array([-1e6, -2.3, -0.26, 0.0, 0.24, 0.26, 1.0, 7.7, 1e6], np.float32)
    expected = np.clip(np.round(x / scale + zero_point), info.min, info.max)
    q = quantize(x, dtype, (scale, zero_point))
    assert q.dtype == dtype and q.tolist() == expected.astype(int).tolist()
    assert q[0] == info.min and q[-1] == info.max  # saturates instead of wrapping around
    assert q[4] == zero_point and q[5] == zero_point + 1  # 0.24 / 0.5 rounds down, 0.26 / 0.5 up
    back = dequantize(q, dtype, (scale, zero_point))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back[1:-1], (expected[1:-1] - zero_point) * scale)
    np.testing.assert_allclose(back[1:-1], x[1:-1], atol=scale / 2)


def test_float32_tensors_pass_through_unscaled():
    from qa_headpose.inference.runtime import dequantize, quantize

    x = np.array([[-1.5, 0.25, 300.0]], np.float64)
    for convert in (quantize, dequantize):
        y = convert(x, np.float32, (0.5, 3))
        assert y.dtype == np.float32 and y.tolist() == [[-1.5, 0.25, 300.0]]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, 79, 80, 3), np.float32),
        np.zeros((0, 80, 80, 3), np.float32),
        np.full((1, 80, 80, 3), np.nan, np.float32),
        np.full((1, 80, 80, 3), np.inf, np.float32),
        np.zeros((80, 80, 3), np.float32),
    ],
)
def test_runner_rejects_bad_input(pose_model, bad):
    with pytest.raises(ValueError):
        TFLiteRunner(pose_model)(bad)


def test_bad_model_files(tmp_path, pose_model):
    with pytest.raises(ModelError, match="not found"):
        TFLiteRunner(tmp_path / "missing.tflite")
    (tmp_path / "garbage.tflite").write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelError, match="Not a valid"):
        TFLiteRunner(tmp_path / "garbage.tflite")
    (tmp_path / "cut.tflite").write_bytes(pose_model.read_bytes()[:5000])
    with pytest.raises(ModelError):
        TFLiteRunner(tmp_path / "cut.tflite")
    with pytest.raises(ValueError, match="num_threads"):
        TFLiteRunner(pose_model, num_threads=0)


def test_tf_lite_interpreter_class_gives_same_numbers(pose_model, pose_crops):
    import tensorflow as tf  # the test may; the inference runtime never does

    litert = TFLiteRunner(pose_model)
    x = _pose_batch(litert, pose_crops)
    np.testing.assert_allclose(TFLiteRunner(pose_model, interpreter_cls=tf.lite.Interpreter)(x), litert(x), atol=1e-6)


def test_runtime_does_not_import_tensorflow(pose_model):
    code = (
        "import sys, numpy as np; from qa_headpose.inference.runtime import TFLiteRunner; "
        f"r = TFLiteRunner({str(pose_model)!r}); r(np.zeros((1, r.input_size, r.input_size, 3), np.float32)); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_interpreter_pool_lends_each_caller_its_own_and_stays_bounded():
    import threading
    import time

    from qa_headpose.inference.runtime import InterpreterPool

    made = []
    pool = InterpreterPool(lambda: made.append(object()) or made[-1], max_size=3)
    in_use, peak, lock = set(), [0], threading.Lock()
    start = threading.Barrier(8)

    def work(_):
        start.wait()
        for _ in range(20):
            with pool.borrow() as item:
                with lock:
                    assert item not in in_use  # never lent to two callers at once
                    in_use.add(item)
                    peak[0] = max(peak[0], len(in_use))
                time.sleep(0.001)
                with lock:
                    in_use.remove(item)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == pool.size == 3 and peak[0] == 3


def test_interpreter_pool_frees_the_slot_of_a_failed_factory():
    from qa_headpose.inference.runtime import InterpreterPool

    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("out of memory")
        return "interpreter"

    pool = InterpreterPool(factory, max_size=1)
    with pytest.raises(OSError):
        with pool.borrow():
            pass
    with pool.borrow() as item:  # would wait forever if the failed creation kept the slot
        assert item == "interpreter"
    with pytest.raises(ValueError, match="max_size"):
        InterpreterPool(factory, max_size=0)


def test_runner_shared_by_threads_returns_each_call_alone():
    """8 threads, 320 calls with batch sizes 1-6 on one runner: exactly the answers of one thread."""
    from concurrent.futures import ThreadPoolExecutor

    from qa_headpose.inference.estimator import DEFAULT_MODEL

    rng = np.random.default_rng(0)
    alone = TFLiteRunner(DEFAULT_MODEL, max_concurrency=1)
    size = alone.input_size
    inputs = [rng.uniform(0, 255, (1 + i % 6, size, size, 3)).astype(np.float32) for i in range(40)]
    expected = [alone(x) for x in inputs]
    shared = TFLiteRunner(DEFAULT_MODEL, max_concurrency=8)
    order = np.random.default_rng(1).permutation(np.repeat(np.arange(40), 8))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda j: shared.run(inputs[j]), order))
    for j, (degrees, saturated) in zip(order, answers):
        np.testing.assert_array_equal(degrees, expected[j])
        assert not saturated.any()
    assert 2 <= shared._pool.size <= 8
