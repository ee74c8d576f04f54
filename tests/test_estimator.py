import numpy as np
import pytest

from qa_headpose import HeadPose, HeadPoseEstimator
from qa_headpose.inference.detect import FaceDetector
from qa_headpose.inference.preprocess import to_model_input


def test_predict_and_batch_agree(pose_model, pose_crops):
    """Ten crops of different sizes and known, distinct poses: the batch answers each crop as alone, in order."""
    est = HeadPoseEstimator.from_tflite(pose_model)
    single = [est.predict(c) for c in pose_crops]
    batch = est.predict_batch(pose_crops)
    assert all(isinstance(p, HeadPose) for p in single)
    np.testing.assert_allclose(np.array(single), np.array(batch), atol=1e-6)
    assert est.predict_batch(pose_crops[::-1]) == batch[::-1]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 5, 3), np.uint8),
    ],
)
def test_predict_rejects_bad_arrays(tiny_int8_tflite, bad):
    with pytest.raises(ValueError):
        HeadPoseEstimator.from_tflite(tiny_int8_tflite).predict(bad)


def test_predict_batch_rejects_empty(tiny_int8_tflite):
    with pytest.raises(ValueError, match="empty"):
        HeadPoseEstimator.from_tflite(tiny_int8_tflite).predict_batch([])


# ---------------------------------------------------------------- shared by threads and processes
def _sample_inputs():
    """Whole images (with 0, 1 and 2 faces), single crops and batches of several sizes, from real photos."""
    import cv2

    from qa_headpose.inference.registry import SAMPLE_IMAGE

    image = cv2.imread(str(SAMPLE_IMAGE))
    mirrored = np.ascontiguousarray(image[:, ::-1])
    around = image[20:320, 100:400]  # the face fills enough of it for the short-range detector
    two = np.hstack([around, around[:, ::-1]])
    rng = np.random.default_rng(0)
    images = [image, mirrored, two, image[40:400, 60:480].copy(), np.full((120, 160, 3), 90, np.uint8)]
    crops = [image[60 + d : 200 + d, 160 + d : 290 + d].copy() for d in range(0, 60, 4)]
    crops += [rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(5)]
    batches = [crops[i : i + n] for i, n in ((0, 2), (3, 5), (5, 8), (1, 3), (10, 4))]
    return images, crops, batches


def _call(est, kind, x):
    if kind == "crop":
        return est.predict(x)
    if kind == "batch":
        return est.predict_batch(x)
    return est.predict_image(x)


def test_one_estimator_shared_by_threads_answers_each_call_as_alone():
    """16 threads, 480 mixed calls on one estimator: each answer equals the single-threaded one, exactly."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    images, crops, batches = _sample_inputs()
    calls = [("image", x) for x in images] + [("crop", x) for x in crops] + [("batch", x) for x in batches]
    reference = HeadPoseEstimator(num_threads=1)
    expected = [_call(reference, kind, x) for kind, x in calls]
    assert sum(len(r) for r in expected[: len(images)]) == 5  # the faces are found: 1 + 1 + 2 + 1 + 0
    shared = HeadPoseEstimator(num_threads=1, max_concurrency=4)
    order = np.random.default_rng(1).permutation(np.tile(np.arange(len(calls)), 480 // len(calls) + 1))[:480]
    start = threading.Barrier(16)

    def work(chunk):
        start.wait()
        return [(j, _call(shared, *calls[j])) for j in chunk]

    with ThreadPoolExecutor(16) as pool:
        answers = [a for part in pool.map(work, np.array_split(order, 16)) for a in part]
    assert len(answers) == 480
    for j, answer in answers:
        assert answer == expected[j], calls[j][0]
    # The calls really ran side by side, each on an interpreter of its own, within the bound.
    assert 2 <= shared.runner._pool.size <= 4
    assert 1 <= shared.detector._pool.size <= 4


def test_concurrent_first_calls_create_one_detector(monkeypatch):
    """The lazy detector is made once even when 8 threads ask for it at the same moment."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from qa_headpose.inference import detect

    images, _, _ = _sample_inputs()
    made = []
    real_init = detect.FaceDetector.__init__

    def slow_init(self, *args, **kwargs):
        made.append(self)
        threading.Event().wait(0.05)  # widen the window in which a second thread could start another
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(detect.FaceDetector, "__init__", slow_init)
    est = HeadPoseEstimator(num_threads=1)
    start = threading.Barrier(8)

    def first_call(_):
        start.wait()
        return est.predict_image(images[0]), est.detector

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(first_call, range(8)))
    assert len(made) == 1
    assert all(det is made[0] for _, det in results)
    assert all(r == results[0][0] and len(r) == 1 for r, _ in results)


def test_max_concurrency_is_validated():
    with pytest.raises(ValueError, match="max_concurrency"):
        HeadPoseEstimator(max_concurrency=0)
    assert HeadPoseEstimator(max_concurrency=3).max_concurrency == 3


def _pose_in_worker(crops):
    return _WORKER_ESTIMATOR[0].predict_batch(crops)


_WORKER_ESTIMATOR: list = []


def _make_worker_estimator():
    _WORKER_ESTIMATOR.append(HeadPoseEstimator(num_threads=1))


def _predict_with(est, image):
    return est.predict_image(image)


def test_estimator_works_in_process_pool_workers():
    """Per-worker estimators (initializer) and an estimator pickled into a task give this process's answers."""
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    images, crops, batches = _sample_inputs()
    est = HeadPoseEstimator(num_threads=1, max_concurrency=2)
    est.detector = FaceDetector("full", num_threads=1)
    again = pickle.loads(pickle.dumps(est))
    assert again.max_concurrency == 2 and again.detector.name == "full" and again.runner is not est.runner
    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=_make_worker_estimator) as pool:
        assert list(pool.map(_pose_in_worker, batches)) == [est.predict_batch(b) for b in batches]
        assert pool.submit(_predict_with, est, images[2]).result() == est.predict_image(images[2])


# ---------------------------------------------------------------- saturation
def _model_with_output_scale(tmp_path, factor: float):
    """The shipped model with its output tensor's scale divided by ``factor`` (its other bytes unchanged)."""
    import struct

    from qa_headpose.inference.estimator import DEFAULT_MODEL

    content = DEFAULT_MODEL.read_bytes()
    old = struct.pack("<f", 100 / 128)
    assert content.count(old) == 1  # only the output tensor has this scale
    path = tmp_path / "squeezed.tflite"
    path.write_bytes(content.replace(old, struct.pack("<f", 100 / 128 / factor)))
    return path


def test_outputs_at_the_ends_of_the_int8_range_are_flagged(tmp_path):
    images, crops, _ = _sample_inputs()
    est = HeadPoseEstimator()
    low, high = est.runner.output_range()
    assert (low, high) == (-100.0, 99.21875)  # the shipped model's output quantization
    poses = est.predict_batch(crops)
    assert not any(p.saturated for p in poses)  # real faces come nowhere near +-99
    # The same network with an output scale 40x finer: most outputs now land on -128 or 127.
    squeezed = HeadPoseEstimator(_model_with_output_scale(tmp_path, 40.0))
    low, high = squeezed.runner.output_range()
    degrees, flags = squeezed.runner.run(to_model_input(crops, squeezed.input_size))
    np.testing.assert_array_equal(flags, (degrees == low) | (degrees == high))
    assert flags.any() and not flags.all()
    squeezed_poses = squeezed.predict_batch(crops)
    assert [p.saturated for p in squeezed_poses] == list(flags.any(axis=1))
    for p in squeezed_poses:
        at_end = any(v in (low, high) for v in p)
        assert p.saturated == at_end
    (face,) = squeezed.predict_image(images[0])
    assert face.pose.saturated and max(abs(v) for v in face.pose) == pytest.approx(100 / 40)


def test_head_pose_stays_a_three_angle_tuple():
    pose = HeadPose(95.0, -3.0, 2.0, saturated=True)
    yaw, pitch, roll = pose
    assert (yaw, pitch, roll) == (95.0, -3.0, 2.0) and len(pose) == 3 and pose == HeadPose(95.0, -3.0, 2.0)
    assert pose.saturated and not HeadPose(1.0, 2.0, 3.0).saturated
    assert pose.as_array().shape == (3,) and "saturated=True" in repr(pose)
    import pickle

    assert pickle.loads(pickle.dumps(pose)).saturated and pose._replace(yaw=1.0).saturated


def test_mirroring_is_symmetric_and_survives_pickling():
    """With ``mirror`` a mirrored face gets exactly the mirrored pose (yaw and roll negated), unlike without."""
    import pickle

    from qa_headpose.core.angles import flip_pose

    _, crops, _ = _sample_inputs()
    flipped = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    for mirror in (True, False):
        est = HeadPoseEstimator(num_threads=1, mirror=mirror)
        poses = np.array(est.predict_batch(crops))
        gap = np.abs(flip_pose(np.array(est.predict_batch(flipped))) - poses).max()
        assert gap < 1e-4 if mirror else gap > 0.3
    again = pickle.loads(pickle.dumps(est := HeadPoseEstimator(mirror=True)))
    assert again.mirror and again.predict(crops[0]) == est.predict(crops[0])
