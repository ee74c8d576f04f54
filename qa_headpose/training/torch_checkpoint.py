"""Reads a PyTorch ``.pth`` state dict into numpy arrays without torch, through a restricted unpickler."""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


_LEGACY_PROTOCOL = 1001


_STORAGE_DTYPES = {  # torch storage class -> little-endian numpy dtype ("bfloat16" is widened)
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}  # fmt: skip


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
