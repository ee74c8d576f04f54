"""``qa-headpose serve``: the HTTP API and the live webcam page (parsing and printing only).

Usage::

    qa-headpose serve [--host 127.0.0.1] [--port 8000] [--model accurate|fast|PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import sys

from qa_headpose.cli.common import EXIT_OK, port, positive_float, positive_int

HELP = "HTTP API and live webcam page (pip install -e .[serve])"
MB = 2**20


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (the defaults are `serve.app.ServeConfig`'s)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--model", help="model name (accurate, fast) or head-pose .tflite path (default: the shipped model)")
    p.add_argument("--threads", type=positive_int, default=2, help="inference worker threads (default 2)")
    p.add_argument("--mirror", action="store_true", help="average each face with its mirror image (~2x model time)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-body-mb", type=positive_float, default=20.0, help="largest request body, MiB (default 20)")
    g.add_argument(
        "--max-pixels", type=positive_int, default=2**25, help="largest image, width x height (default 2**25)"
    )
    g.add_argument(
        "--max-pending", type=positive_int, default=32, help="requests in progress at once; 503 beyond (default 32)"
    )
    g.add_argument("--body-timeout", type=positive_float, default=30.0, help="seconds to upload a body (default 30)")


def run(args: argparse.Namespace) -> int:
    """Runs the server until Ctrl+C; returns the exit code."""
    try:
        from qa_headpose.serve.app import ServeConfig, run_server
    except ImportError as exc:
        raise ImportError(f"qa-headpose serve needs the serve extra: pip install -e .[serve] ({exc})") from None
    cfg = ServeConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        threads=args.threads,
        mirror=args.mirror,
        max_body_bytes=int(args.max_body_mb * MB),
        max_pixels=args.max_pixels,
        max_pending=args.max_pending,
        body_timeout_s=args.body_timeout,
    )

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
