"""What a request may cost before a worker sees it (serve/limits.py) and the JPEG walk the server relies on:
upload slots that drop stalled uploads, the byte budget, the multipart parser, and costs linear in the bytes.
"""

from __future__ import annotations

import time

import pytest

from qa_headpose.inference import images

pytest.importorskip("starlette", reason="qa-headpose serve needs the serve extra: pip install -e .[serve]")
from qa_headpose.serve.config import MIN_UPLOAD_RATE, STALL_S, UPLOAD_GRACE_S  # noqa: E402
from qa_headpose.serve.errors import ApiError  # noqa: E402
from qa_headpose.serve.limits import MAX_PARTS, UploadGate, check_image, image_from_multipart  # noqa: E402

MIB = 2**20


def _code(call) -> str:
    with pytest.raises(ApiError) as info:
        call()
    return info.value.code


def test_gate_refuses_when_full_then_drops_a_stalled_upload():
    gate = UploadGate(max_uploads=2, max_bytes=10 * MIB)
    first, second = gate.admit(MIB), gate.admit(MIB)
    assert _code(lambda: gate.admit(MIB)) == "busy"  # both are young: no one is dropped
    first.started -= UPLOAD_GRACE_S + 1  # stalled: nothing received since
    second.started -= UPLOAD_GRACE_S + 1
    second.received = int(MIN_UPLOAD_RATE * (UPLOAD_GRACE_S + 2))  # fast enough, and bytes came just now
    third = gate.admit(MIB)
    assert first.dropped.is_set() and not second.dropped.is_set() and gate.uploads == {second, third}
    second.last -= STALL_S  # fast on average, then silent: stalled too
    fourth = gate.admit(MIB)
    assert second.dropped.is_set() and gate.uploads == {third, fourth}
    assert gate.held_bytes == 2 * MIB
    gate.finish(third)
    assert gate.uploads == {fourth} and gate.held_bytes == 2 * MIB  # bytes held until the worker is done
    gate.release(third)
    gate.release(third)  # twice is harmless
    assert gate.held_bytes == MIB


def test_gate_byte_budget_counts_declared_and_streamed_bytes():
    gate = UploadGate(max_uploads=10, max_bytes=3 * MIB)
    upload = gate.admit(2 * MIB)
    assert _code(lambda: gate.admit(2 * MIB)) == "busy"
    chunked = gate.admit(0)
    gate.grow(chunked, MIB)
    assert gate.held_bytes == 3 * MIB
    assert _code(lambda: gate.grow(chunked, MIB + 1)) == "busy"
    gate.release(upload)
    gate.release(chunked)
    assert gate.held_bytes == 0


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0und") -> tuple[str, bytes]:
    body = b"preamble\r\n"
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return f'multipart/form-data; boundary="{boundary}"', body + f"--{boundary}--\r\n".encode()


def test_multipart_takes_the_image_field_only():
    ctype, body = _multipart([("note", None, b"hi"), ("image", "a.jpg", b"\xff\xd8\xffDATA\r\n--not-it")])
    assert image_from_multipart(ctype, body) == b"\xff\xd8\xffDATA\r\n--not-it"
    assert _code(lambda: image_from_multipart(*_multipart([("photo", "a.jpg", b"x")]))) == "no_image"
    assert _code(lambda: image_from_multipart(*_multipart([("image", None, b"x")]))) == "no_image"
    two = _multipart([("image", "a.jpg", b"x"), ("other", "b.jpg", b"y")])
    assert _code(lambda: image_from_multipart(*two)) == "bad_multipart"
    many = _multipart([("f", None, b"x")] * (MAX_PARTS + 1))
    assert _code(lambda: image_from_multipart(*many)) == "bad_multipart"
    assert _code(lambda: image_from_multipart("multipart/form-data", body)) == "bad_multipart"
    assert _code(lambda: image_from_multipart(ctype, body[:-12])) == "bad_multipart"


@pytest.mark.parametrize(
    "body",
    [
        b"--b0und\r\n" + b"\r\n--b0un" * (2 * MIB),  # near-boundaries everywhere
        b"--b0und\r\nContent-Disposition: form-data; name=image; filename=a\r\n\r\n" + b"\r" * (16 * MIB),
        b"\xff" * (16 * MIB),
    ],
    ids=["near-boundaries", "carriage-returns", "no-boundary"],
)
def test_multipart_cost_is_linear(body):
    start = time.perf_counter()
    _code(lambda: image_from_multipart('multipart/form-data; boundary="b0und"', body))
    assert time.perf_counter() - start < 0.5


def test_check_image_reads_only_the_header():
    assert _code(lambda: check_image(b"", 100)) == "empty_body"
    assert _code(lambda: check_image(b"GIF89a\x01\x00\x01\x00", 100)) == "unsupported_media_type"
    assert _code(lambda: check_image(b"\xff\xd8\xff\xd9", 100)) == "bad_image"


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xd8" + b"\xff" * (20 * MIB),  # fill bytes
        b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\xff" * (20 * MIB),  # a scan of FF, no end
        b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00\xd9" * (10 * MIB),  # D9s without FF
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * (5 * MIB),  # 5 million empty comment segments
    ],
    ids=["fill", "ff-scan", "d9-scan", "many-segments"],
)
def test_jpeg_walk_cost_is_bounded(payload):
    """No byte-by-byte Python: each 20 MiB crafted JPEG is sized and checked for truncation in well under 0.2 s."""
    start = time.perf_counter()
    images.image_header_size(payload)
    images._jpeg_is_truncated(payload)
    assert time.perf_counter() - start < 0.2


def test_jpeg_truncation_is_still_found():
    import cv2
    import numpy as np

    jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    assert not images._jpeg_is_truncated(jpeg) and images._jpeg_is_truncated(jpeg[:-2])
    assert images._jpeg_is_truncated(jpeg[: len(jpeg) // 2])
    assert not images._jpeg_is_truncated(jpeg + b"trailing data after EOI")
    assert images.image_header_size(jpeg) == (64, 64)
