"""What a request may cost before it reaches a worker: upload slots, the byte budget, the body and its deadline,
the multipart envelope and the image's format and size, each checked in time linear in the bytes, in C.

Nothing here walks a body byte by byte in Python: the multipart parser uses `bytes.find`, the image checks read
a header of at most a few kB (`images.image_header_size`), and the rest of the image is left to the worker.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import AsyncIterator

from qa_headpose.inference.images import image_header_size
from qa_headpose.serve.config import MIN_UPLOAD_RATE, STALL_S, UPLOAD_GRACE_S, ServeConfig
from qa_headpose.serve.errors import ApiError

IMAGE_FORMATS = ("jpeg", "png", "webp")
# Multipart: at most this many parts, each with at most this many bytes of headers.
MAX_PARTS = 16
MAX_PART_HEADER_BYTES = 8192
_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(rb';\s*(name|filename)\s*=\s*(?:"([^"]*)"|([^;\s]*))', re.IGNORECASE)


class Upload:
    """One body being received: its byte reservation, progress, and the event set when it is dropped."""

    def __init__(self, reserved: int) -> None:
        self.started = self.last = time.monotonic()  # last: when the latest bytes came
        self.reserved = reserved
        self.received = 0
        self.dropped = asyncio.Event()

    def stalled(self, now: float) -> bool:
        """Past its grace, and silent for `STALL_S` or slower than `MIN_UPLOAD_RATE` on average."""
        age = now - self.started
        return age >= UPLOAD_GRACE_S and (now - self.last >= STALL_S or self.received < MIN_UPLOAD_RATE * age)


class UploadGate:
    """Bounds uploads in progress (count) and bodies held (bytes, uploading or queued) apart from queued work.

    When a new upload finds the slots or the bytes full, the stalled upload (`Upload.stalled`) silent
    for longest is dropped (it answers 408) to make room; without one the new upload is refused with 503.
    """

    def __init__(self, max_uploads: int, max_bytes: int) -> None:
        self.max_uploads, self.max_bytes = max_uploads, max_bytes
        self.uploads: set[Upload] = set()
        self.held_bytes = 0  # reservations of uploads in progress and of bodies not yet done with

    def admit(self, reserve: int) -> Upload:
        """A slot for a body of up to ``reserve`` bytes; raises ApiError("busy") when none can be made."""
        while len(self.uploads) >= self.max_uploads or self.held_bytes + reserve > self.max_bytes:
            if not self._drop_slowest():
                what = "upload slots" if len(self.uploads) >= self.max_uploads else "bytes for bodies"
                raise ApiError("busy", f"the server's {what} are all taken; retry", {"Retry-After": "1"})
        upload = Upload(reserve)
        self.uploads.add(upload)
        self.held_bytes += reserve
        return upload

    def grow(self, upload: Upload, size: int) -> None:
        """Raises the reservation of a body without a declared length as it streams in."""
        if size > upload.reserved:
            if self.held_bytes + size - upload.reserved > self.max_bytes:
                raise ApiError("busy", "the server's bytes for bodies are all taken; retry", {"Retry-After": "1"})
            self.held_bytes += size - upload.reserved
            upload.reserved = size

    def finish(self, upload: Upload) -> None:
        """The body has arrived (or failed): frees the slot; the bytes stay held until `release`."""
        self.uploads.discard(upload)

    def release(self, upload: Upload) -> None:
        """The body is no longer held: frees its bytes."""
        self.uploads.discard(upload)
        self.held_bytes -= upload.reserved
        upload.reserved = 0

    def _drop_slowest(self) -> bool:
        now = time.monotonic()
        stalled = [u for u in self.uploads if u.stalled(now) and not u.dropped.is_set()]
        if not stalled:
            return False
        victim = min(stalled, key=lambda u: (u.last, u.received))
        victim.dropped.set()
        self.release(victim)
        return True


def declared_length(headers) -> int | None:
    """The request's Content-Length, or None when it has none (chunked); ApiError for a bad one."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    if not declared.isdigit() or len(declared) > 19:
        raise ApiError("bad_request", f"invalid Content-Length: {declared[:40]!r}")
    return int(declared)


async def read_body(stream: AsyncIterator[bytes], upload: Upload, gate: UploadGate, cfg: ServeConfig) -> bytes:
    """The body, within ``cfg.body_timeout_s`` from the upload's start and ``cfg.max_body_bytes``.

    Raises:
        ApiError: body_timeout (late or dropped as stalled), body_too_large, busy (byte budget).
    """

    async def collect() -> bytes:
        chunks = []
        async for chunk in stream:
            upload.received += len(chunk)
            upload.last = time.monotonic()
            if upload.received > cfg.max_body_bytes:
                raise ApiError("body_too_large", f"the body is over {cfg.max_body_bytes} bytes, the most accepted")
            gate.grow(upload, upload.received)
            chunks.append(chunk)
        return b"".join(chunks)

    reader = asyncio.ensure_future(collect())
    dropped = asyncio.ensure_future(upload.dropped.wait())
    try:
        remaining = cfg.body_timeout_s - (time.monotonic() - upload.started)
        await asyncio.wait({reader, dropped}, timeout=max(remaining, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        dropped.cancel()
        if not reader.done():
            reader.cancel()
    if reader.done() and not reader.cancelled():
        return reader.result()  # the body, or its ApiError / ClientDisconnect
    if upload.dropped.is_set():
        raise ApiError("body_timeout", "the upload stalled and was dropped to make room for another")
    raise ApiError("body_timeout", f"the body took over {cfg.body_timeout_s:g} s to arrive")


def image_from_multipart(content_type: str, body: bytes) -> bytes:
    """The file of the field ``image`` in a multipart/form-data body (found with `bytes.find`, no byte loop).

    Raises:
        ApiError: bad_multipart (no boundary, unterminated, over `MAX_PARTS` parts, two files) or no_image.
    """
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise ApiError("bad_multipart", "cannot parse the multipart body: no boundary in its Content-Type")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin1")
    pos = body.find(delimiter)
    image, files = None, 0
    for _ in range(MAX_PARTS + 1):
        if pos < 0:
            raise ApiError("bad_multipart", "cannot parse the multipart body: a boundary is missing")
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            break  # the closing delimiter
        end_headers = body.find(b"\r\n\r\n", pos, pos + MAX_PART_HEADER_BYTES)
        if body[pos : pos + 2] != b"\r\n" or end_headers < 0:
            raise ApiError("bad_multipart", "cannot parse the multipart body: a part has no header block")
        following = body.find(b"\r\n" + delimiter, end_headers + 4)
        if following < 0:
            raise ApiError("bad_multipart", "cannot parse the multipart body: it ends before its last boundary")
        params = _disposition(body[pos + 2 : end_headers])
        if "filename" in params:
            files += 1
            if params.get("name") == b"image":
                image = body[end_headers + 4 : following]
        pos = following + 2
    else:
        raise ApiError("bad_multipart", f"cannot parse the multipart body: over {MAX_PARTS} parts")
    if files > 1:
        raise ApiError("bad_multipart", "the multipart body holds more than one file; send one image")
    if image is None:
        raise ApiError("no_image", "the multipart body has no file field named image; send it as -F image=@face.jpg")
    return image


def _disposition(headers: bytes) -> dict[str, bytes]:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-disposition":
            return {m[0].lower().decode(): m[1] or m[2] for m in _DISPOSITION_PARAM.findall(value)}
    return {}


def image_format(payload: bytes) -> str | None:
    """The format ("jpeg", "png" or "webp") from the first bytes of an encoded image; None for anything else."""
    if payload[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if payload[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if payload[:4] == b"RIFF" and payload[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(payload: bytes, max_pixels: int) -> str:
    """The image's format, after checking its kind and its size from the header (no decoding).

    Raises:
        ApiError: empty_body, unsupported_media_type, bad_image (no size in the header) or image_too_large.
    """
    if not payload:
        raise ApiError("empty_body", "the body is empty; send a JPEG, PNG or WebP image")
    kind = image_format(payload)
    if kind is None:
        raise ApiError("unsupported_media_type", "the body is not a JPEG, PNG or WebP image")
    size = image_header_size(payload)
    if size is None or min(size) < 1:
        raise ApiError("bad_image", f"cannot read the image size from its {kind.upper()} header")
    if size[0] * size[1] > max_pixels:
        raise ApiError("image_too_large", f"the image is {size[0]}x{size[1]} pixels; at most {max_pixels} are decoded")
    return kind
