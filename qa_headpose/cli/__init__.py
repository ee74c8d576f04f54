"""``qa-headpose``: one module per command (parsing, printing, calls into the package) and `main`.

``main.py`` holds the parser, the subcommand registry and the error handling; ``common.py`` the
argparse types and helpers every command shares. The console script is ``qa_headpose.cli:main``.
"""

from __future__ import annotations

from qa_headpose.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError
from qa_headpose.cli.main import (
    SUBCOMMANDS,
    benchmark_main,
    build_parser,
    evaluate_main,
    export_main,
    main,
    port_imagenet_main,
    run_command,
    train_main,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "SUBCOMMANDS",
    "UsageError",
    "benchmark_main",
    "build_parser",
    "evaluate_main",
    "export_main",
    "main",
    "port_imagenet_main",
    "run_command",
    "train_main",
]
