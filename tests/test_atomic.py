"""core.atomic: a failed write leaves the old file and no temp; concurrent writers never mix; model + JSON pairs."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from qa_headpose.core import atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_write_bytes_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.bin"
    atomic.write_bytes(path, b"old")
    atomic.write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_writer_that_raises_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the new fi")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_writer_that_writes_nothing_is_an_error(tmp_path):
    path = tmp_path / "plot.png"
    with pytest.raises(FileNotFoundError):
        with atomic.atomic_path(path):
            pass
    assert not path.exists() and _leftovers(tmp_path) == []


def test_temp_path_keeps_suffix_and_differs_per_thread(tmp_path):
    names = []
    both_alive = threading.Barrier(2)  # thread ids are reused once a thread ends

    def name() -> None:
        names.append(atomic.temp_path(tmp_path / "x.npz"))
        both_alive.wait()

    threads = [threading.Thread(target=name) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert names[0] != names[1]
    assert all(p.suffix == ".npz" and p.parent == tmp_path for p in names)
    assert atomic.temp_path(tmp_path / "best.weights.h5").name.endswith(".weights.h5")


def test_path_writers_that_pick_format_from_suffix(tmp_path):
    path = tmp_path / "faces.npz"
    with atomic.atomic_path(path) as tmp:
        np.savez(tmp, x=np.arange(3))
    with np.load(path) as npz:
        assert npz["x"].tolist() == [0, 1, 2]


def test_concurrent_writers_of_one_path_never_mix(tmp_path):
    path = tmp_path / "shared.bin"
    size = 1 << 20
    payloads = [bytes([65 + i]) * size for i in range(4)]
    errors: list[BaseException] = []

    def write(payload: bytes) -> None:
        try:
            for _ in range(15):
                atomic.write_bytes(path, payload)
                got = path.read_bytes()
                if got not in payloads:
                    raise AssertionError(f"mixed file: {len(got)} bytes, {sorted(set(got))}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_bytes() in payloads
    assert _leftovers(tmp_path) == []


def test_write_model_writes_json_first_with_the_hash(tmp_path, monkeypatch):
    path = tmp_path / "m.tflite"
    order = []
    real = atomic.write_bytes
    monkeypatch.setattr(atomic, "write_bytes", lambda p, b: (order.append(p.suffix), real(p, b)))
    meta = atomic.write_model(path, b"model-bytes", {"input_size": 32})
    assert order == [".json", ".tflite"]
    assert json.loads(path.with_suffix(".json").read_text()) == meta
    assert meta["sha256"] == atomic.sha256_bytes(b"model-bytes")


def test_runner_refuses_a_model_whose_json_names_other_bytes(tiny_int8_tflite, tmp_path):
    from qa_headpose.core.errors import ModelError
    from qa_headpose.inference.runtime import TFLiteRunner

    path = tmp_path / "m.tflite"
    payload = open(tiny_int8_tflite, "rb").read()
    atomic.write_model(path, payload, {})
    TFLiteRunner(path)  # a matched pair loads
    # A crash between the JSON and the model write: new JSON, old model.
    atomic.write_json(path.with_suffix(".json"), {"sha256": atomic.sha256_bytes(b"the next model")})
    with pytest.raises(ModelError, match="sha256"):
        TFLiteRunner(path)
