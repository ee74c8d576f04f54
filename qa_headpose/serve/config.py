"""`ServeConfig`: what ``qa-headpose serve`` serves and every limit it keeps (the one home of their defaults)."""

from __future__ import annotations

import dataclasses

MB = 2**20

# An upload older than UPLOAD_GRACE_S that has received nothing for STALL_S, or averages under MIN_UPLOAD_RATE
# bytes/s, is stalled: it is dropped (408) to make room for a new one when the upload slots or the byte budget
# are full, so holding a slot against others costs a client a steady MIN_UPLOAD_RATE per slot.
UPLOAD_GRACE_S = 0.5
STALL_S = 1.0
MIN_UPLOAD_RATE = 32 * 1024
# A request line and headers over this many bytes are refused (431) and the connection closed.
MAX_HEADER_BYTES = 64 * 1024
# asyncio accepts up to this many connections per wake-up, before any is closed to make room (the listen queue
# itself is LISTEN_BACKLOG); descriptors kept free of the open-files limit: the server's own files and sockets
# (~30) and two such bursts, so accepting never fails with "Too many open files".
ACCEPT_BURST = 32
LISTEN_BACKLOG = 1024
RESERVED_FDS = 64 + 2 * ACCEPT_BURST
# Bad requests and accept errors logged per message and per window (the rest are counted, then summed up).
LOG_BURST = 5
LOG_WINDOW_S = 60.0


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """What ``qa-headpose serve`` serves and its limits (the CLI's flags are the same names in kebab-case).

    Fields:
        host: address to bind; 127.0.0.1 keeps the server on this machine.
        port: TCP port; 0 picks a free one.
        model: head-pose model name or .tflite path, passed to `HeadPoseEstimator`; None for the shipped one.
        threads: inference worker threads, each with its own estimator (one interpreter thread each).
        mirror: average each face's pose with its mirror image's (`HeadPoseEstimator`'s ``mirror``).
        max_body_bytes: largest request body, bytes (413 beyond it, before reading the rest).
        max_pixels: largest image, width x height from its header (413 beyond it, before decoding).
        max_pending: requests whose body has arrived, queued or running on a worker (503 beyond it).
        max_uploads: requests whose body is still arriving (503 beyond it, after dropping a stalled one).
        max_buffered_bytes: bytes of bodies held at once, uploading or queued, by their declared size (503 beyond).
        body_timeout_s: time allowed to upload one body, seconds (408 beyond it).
        header_timeout_s: time allowed for a request's line and headers, from the connection's start or the
            previous answer, seconds (the connection is closed beyond it; 408 if some of it had arrived).
        keepalive_timeout_s: an idle connection between requests is closed after this many seconds.
        max_connections: open connections; a new one beyond it closes the one that has waited longest for its
            headers (or is refused when none waits).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    threads: int = 2
    mirror: bool = False
    max_body_bytes: int = 20 * MB
    max_pixels: int = 2**25
    max_pending: int = 32
    max_uploads: int = 16
    max_buffered_bytes: int = 256 * MB
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    keepalive_timeout_s: int = 5
    max_connections: int = 1000

    def __post_init__(self) -> None:
        counts = ("threads", "max_body_bytes", "max_pixels", "max_pending", "max_uploads", "max_buffered_bytes")
        for name in (*counts, "keepalive_timeout_s", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535. Received: port={self.port}")
        for name in ("body_timeout_s", "header_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0. Received: {name}={getattr(self, name)}")
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ValueError(
                "max_buffered_bytes must be >= max_body_bytes (one largest body must fit). "
                f"Received: max_buffered_bytes={self.max_buffered_bytes}, max_body_bytes={self.max_body_bytes}"
            )


DEFAULTS = ServeConfig()
