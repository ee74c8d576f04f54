"""``qa-headpose serve``: the HTTP API and the live webcam page (parsing and printing only).

Usage::

    qa-headpose serve [--host 127.0.0.1] [--port 8000] [--model accurate|fast|PATH] [--threads N]

Every default comes from `serve.config.ServeConfig` (imported without the serve extra: it needs nothing).
"""

from __future__ import annotations

import argparse
import sys

from qa_headpose.cli.common import EXIT_OK, port, positive_float, positive_int
from qa_headpose.serve.config import DEFAULTS, MB, ServeConfig

HELP = "HTTP API and live webcam page (pip install -e .[serve])"

# flag: (ServeConfig field, type, unit of the flag in the field's unit, help); the default is the field's.
LIMITS = {
    "--max-body-mb": ("max_body_bytes", positive_float, MB, "largest request body, MiB"),
    "--max-pixels": ("max_pixels", positive_int, 1, "largest image, width x height, read from its header"),
    "--max-pending": ("max_pending", positive_int, 1, "requests queued or running on a worker; 503 beyond"),
    "--max-uploads": ("max_uploads", positive_int, 1, "bodies arriving at once; 503 beyond, once none is stalled"),
    "--max-buffered-mb": ("max_buffered_bytes", positive_float, MB, "bodies held at once (arriving or queued), MiB"),
    "--body-timeout": ("body_timeout_s", positive_float, 1, "seconds to upload one body; 408 beyond"),
    "--header-timeout": ("header_timeout_s", positive_float, 1, "seconds for a request's headers, from connect"),
    "--keepalive-timeout": ("keepalive_timeout_s", positive_int, 1, "seconds an idle connection is kept"),
    "--max-connections": ("max_connections", positive_int, 1, "open connections; one more drops the longest idle"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (the defaults are `ServeConfig`'s)."""
    d = DEFAULTS
    p.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}: this machine only)")
    p.add_argument("--port", type=port, default=d.port, help=f"TCP port (default {d.port}; 0 picks a free one)")
    p.add_argument("--model", help="model name (accurate, fast) or head-pose .tflite path (default: the shipped model)")
    p.add_argument("--threads", type=positive_int, default=d.threads, help=f"inference threads (default {d.threads})")
    p.add_argument("--mirror", action="store_true", help="average each face with its mirror image (~2x model time)")
    g = p.add_argument_group("limits (docs/serve.md)")
    for flag, (field, kind, unit, text) in LIMITS.items():
        default = getattr(d, field) / unit if unit != 1 else getattr(d, field)
        shown = f"{default:g}" if isinstance(default, float) else default
        g.add_argument(flag, type=kind, default=default, help=f"{text} (default {shown})")


def make_config(args: argparse.Namespace) -> ServeConfig:
    """The `ServeConfig` of parsed arguments."""
    limits = {}
    for flag, (field, kind, unit, _) in LIMITS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        limits[field] = int(value * unit) if unit != 1 else value
    limits["max_buffered_bytes"] = max(limits["max_buffered_bytes"], limits["max_body_bytes"])
    return ServeConfig(
        host=args.host, port=args.port, model=args.model, threads=args.threads, mirror=args.mirror, **limits
    )


def run(args: argparse.Namespace) -> int:
    """Runs the server until Ctrl+C; returns the exit code."""
    try:
        from qa_headpose.serve.server import run_server
    except ImportError as exc:
        raise ImportError(f"qa-headpose serve needs the serve extra: pip install -e .[serve] ({exc})") from None
    cfg = make_config(args)

    def on_ready(url: str) -> None:
        print(f"qa-headpose serve: open {url} (live page); API: POST {url}v1/poses; Ctrl+C stops", flush=True)
        if cfg.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                "qa-headpose serve: warning: listening beyond this machine, without authentication or TLS; "
                "browsers allow the camera only on localhost or https",
                file=sys.stderr,
                flush=True,
            )

    run_server(cfg, on_ready)
    return EXIT_OK
