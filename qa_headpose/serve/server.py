"""The socket and the HTTP layer of ``qa-headpose serve``: uvicorn with httptools, plus the limits uvicorn lacks.

uvicorn closes an idle connection only after a first answer (``timeout_keep_alive``) and has no deadline for a
request's headers, no bound on their size with httptools, and no connection limit that frees a file descriptor.
`guarded_protocol` adds them to uvicorn's httptools protocol:

- the request line and headers must arrive within ``header_timeout_s`` of the connection's start or of the
  previous answer, and within `MAX_HEADER_BYTES` (else 408 / 431, JSON, and the connection is closed);
- at most ``max_connections`` connections (bounded below the open-files limit, which is raised to its hard
  limit when allowed): one more closes the connection that has waited longest for its headers;
- an answer sent before its request's body ended closes the connection (the client cannot keep it by
  trickling an unread body);
- the HTTP layer's own errors are JSON, like the app's; its log lines are rate-limited (`RateLimitFilter`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from typing import Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from qa_headpose.serve.config import (
    ACCEPT_BURST,
    LISTEN_BACKLOG,
    LOG_BURST,
    LOG_WINDOW_S,
    MAX_HEADER_BYTES,
    RESERVED_FDS,
    ServeConfig,
)
from qa_headpose.serve.errors import raw_error_response
from qa_headpose.serve.routes import create_app

logger = logging.getLogger(__name__)


class RateLimitFilter(logging.Filter):
    """Lets through `LOG_BURST` records per message per `LOG_WINDOW_S`; counts the rest and says how many.

    An OSError's traceback is cut to one line (an accept that fails for want of descriptors is not a bug).
    """

    def __init__(self, burst: int = LOG_BURST, window_s: float = LOG_WINDOW_S) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[str, list] = {}  # message template: [window start, passed, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        entry = self._seen.setdefault(str(record.msg)[:200], [now, 0, 0])
        if now - entry[0] >= self.window_s:
            if entry[2]:
                record.msg = f"{record.msg} [{entry[2]} more like it in the last {self.window_s:g} s not logged]"
            entry[:] = [now, 0, 0]
        if entry[1] < self.burst:
            entry[1] += 1
            if record.exc_info and isinstance(record.exc_info[1], OSError):
                record.msg = f"{record.msg} ({record.exc_info[1]})".replace("\n", "; ")
                record.exc_info = record.exc_text = None
            return True
        entry[2] += 1
        return False


def open_files_limit(wanted: int) -> int:
    """Raises the soft open-files limit towards ``wanted`` (up to the hard limit); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def guarded_protocol(cfg: ServeConfig, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a header deadline and size bound, a connection limit and JSON errors.

    Args:
        cfg: ``header_timeout_s`` is read from it.
        max_connections: open connections allowed (the effective one, under the open-files limit).
    """
    waiting: dict[HttpToolsProtocol, None] = {}  # connections waiting for headers, longest first

    class GuardedProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                oldest = next(iter(waiting), None)
                if oldest is None:
                    self._fail("busy", f"{max_connections} connections are open and busy; retry")
                    return
                oldest._drop()
            self._await_headers()

        def _await_headers(self) -> None:
            self._header_bytes = 0
            waiting[self] = None
            self._header_timer = self.loop.call_later(cfg.header_timeout_s, self._on_header_timeout)

        def _stop_waiting(self) -> None:
            waiting.pop(self, None)
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _fail(self, code: str, message: str) -> None:
            self._stop_waiting()
            if not self.transport.is_closing():
                self.transport.write(raw_error_response(code, message))
                self.transport.close()

        def _drop(self) -> None:
            """Closes a connection waiting for headers: 408 if some of the request had come, else nothing."""
            if self._header_bytes:
                self._fail("request_timeout", "the request's headers did not arrive in time")
            else:
                self._stop_waiting()
                self.transport.close()

        def _on_header_timeout(self) -> None:
            self._header_timer = None
            logger.info("closed a connection whose request headers did not arrive within the header timeout")
            self._drop()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self in waiting and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._header_bytes > MAX_HEADER_BYTES:
                    self._fail("headers_too_large", f"the request line and headers are over {MAX_HEADER_BYTES} bytes")

        def on_headers_complete(self) -> None:
            self._stop_waiting()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            body_unread = self.cycle is not None and self.cycle.more_body
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if body_unread:
                self.transport.close()
            elif not self.pipeline:
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._fail("bad_request", f"invalid HTTP request: {msg.rstrip('.')}")

    return GuardedProtocol


class _Server(uvicorn.Server):
    """uvicorn's server, with the listen queue widened once asyncio has set it to its accept burst."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for sock in sockets or []:
            sock.listen(LISTEN_BACKLOG)


def server_url(sock: socket.socket) -> str:
    """``http://host:port/`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _quiet_logs() -> None:
    for name in ("uvicorn.error", "asyncio", "qa_headpose.serve.routes", __name__):
        log = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in log.filters):
            log.addFilter(RateLimitFilter())


def run_server(cfg: ServeConfig | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serves `routes.create_app` with uvicorn (httptools, `guarded_protocol`) until interrupted.

    Args:
        cfg: address, model and limits (`ServeConfig`); None for the defaults.
        on_ready: called with the server's URL once it listens (the port is the real one when ``cfg.port`` is 0).

    Raises:
        runtime.ModelError: if the model cannot be loaded.
        OSError: if the address cannot be bound (port in use, unknown host).
    """
    cfg = cfg or ServeConfig()
    app = create_app(cfg)
    _quiet_logs()
    files = open_files_limit(cfg.max_connections + RESERVED_FDS)
    max_connections = min(cfg.max_connections, files - RESERVED_FDS)
    if max_connections < cfg.max_connections:
        logger.warning("open-files limit %d: serving at most %d connections at once", files, max_connections)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.create_server((cfg.host, cfg.port), family=family, backlog=LISTEN_BACKLOG)
    # Accepted connections inherit it: without it a keep-alive client waits ~40 ms per answer (Nagle against
    # its delayed ACK when the headers and the body go out as two writes).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(cfg, max(max_connections, 1)),
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        server_header=False,
        timeout_keep_alive=cfg.keepalive_timeout_s,
        backlog=ACCEPT_BURST,  # asyncio accepts this many per wake-up (and listens with it, widened by _Server)
    )
    if on_ready is not None:
        on_ready(server_url(sock))  # connections wait in the listen backlog until uvicorn accepts
    _Server(config).run(sockets=[sock])
