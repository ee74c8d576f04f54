"""``qa-headpose`` command line: the parser, the subcommand registry and the error handling.

Every subcommand returns an exit code: 0 on success, 2 for bad input (one line on
stderr, no traceback), 1 for a missing dependency (one line naming the pip command) or an
unexpected failure (one line too; set QA_HEADPOSE_TRACEBACK=1 to see the traceback). Bad input is a bad command line (argparse's error, without the usage
block), `UsageError`, `DataError`, `ModelError` or another ValueError/OSError.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType
from typing import Callable, Sequence

from qa_headpose import __version__
from qa_headpose.cli import (
    benchmark,
    data,
    evaluate,
    export,
    export_onnx,
    port_imagenet,
    predict,
    serve,
    train,
)
from qa_headpose.cli.common import EXIT_FAILURE, EXIT_USAGE, ArgumentParser, UsageError
from qa_headpose.cli.status import setup_logging

# name -> the module with HELP, add_arguments(parser) and run(args) -> exit code; in --help order.
SUBCOMMANDS: dict[str, ModuleType] = {
    "train": train,
    "export": export,
    "evaluate": evaluate,
    "data": data,
    "port-imagenet": port_imagenet,
    "predict": predict,
    "benchmark": benchmark,
    "export-onnx": export_onnx,
    "serve": serve,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``qa-headpose`` with all subcommands."""
    parser = ArgumentParser(prog="qa-headpose", description="Head pose (yaw, pitch, roll) with an int8 MobileNetV2.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.HELP, description=command.HELP)
        command.add_arguments(p)
        _add_verbose(p)
    return parser


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """--verbose on a command, or on each of its subcommands (``data crop ... --verbose``)."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if nested:
        for child in nested[0].choices.values():
            _add_verbose(child)
        return
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's start-up and CUDA messages and the library's INFO log (hidden by default)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``qa-headpose``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code or 0)
    if args.verbose:  # read by training/_keras.py when TensorFlow is imported
        from qa_headpose.core.native_stderr import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    setup_logging(args.command, args)
    return run_command(args.command, lambda: SUBCOMMANDS[args.command].run(args))


def run_command(name: str, call: Callable[[], int]) -> int:
    """Runs a subcommand, turning expected errors into one line on stderr and exit code 2."""
    from qa_headpose.core.errors import DataError, ModelError

    try:
        return call()
    except (
        UsageError,
        DataError,
        ModelError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
        ValueError,
    ) as exc:
        print(f"qa-headpose {name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:  # the environment, not the command line: say what to install
        from qa_headpose.core.deps import missing_dependency_message

        print(f"qa-headpose {name}: error: {missing_dependency_message(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"qa-headpose {name}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"qa-headpose {name}: error: out of memory", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("QA_HEADPOSE_TRACEBACK"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"qa-headpose {name}: internal error: {type(exc).__name__}: {first} "
            "(please report it; QA_HEADPOSE_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def train_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose train``."""
    return main(["train", *(sys.argv[1:] if argv is None else argv)])


def export_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose export`` (also ``python export_tflite.py``)."""
    return main(["export", *(sys.argv[1:] if argv is None else argv)])


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose benchmark`` (also ``python benchmark_tflite.py``)."""
    return main(["benchmark", *(sys.argv[1:] if argv is None else argv)])


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose evaluate``."""
    return main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


def port_imagenet_main(argv: Sequence[str] | None = None) -> int:
    """``qa-headpose port-imagenet``."""
    return main(["port-imagenet", *(sys.argv[1:] if argv is None else argv)])
