"""inference/images.py: image sizes read from headers, the JPEG walk, the size limits and pixel conversion.

Found by mutation testing (mutmut, docs/testing.md): these tests kill the mutants that survived the older
tests (test_data, test_exif, test_hostile), e.g. a header's width and height swapped or read from the wrong
bytes, a JPEG marker class moved, a limit off by one, the end-marker search missing a pair across its window.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from qa_headpose.core.errors import DataError
from qa_headpose.inference import images

# Width and height differ and each exceeds 255, so a swap, or one byte of two, shows.
WIDTH, HEIGHT = 300, 517
SMOOTH = np.dstack(
    [np.add.outer(np.arange(HEIGHT) // 3, np.arange(WIDTH) // 2).astype(np.uint8)] * 3
)  # compresses fast in every format


def encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


ENCODED = {
    "png": encode(".png", SMOOTH),
    "bmp": encode(".bmp", SMOOTH),
    "gif": encode(".gif", SMOOTH),
    "webp-lossy": encode(".webp", SMOOTH, cv2.IMWRITE_WEBP_QUALITY, 90),
    "webp-lossless": encode(".webp", SMOOTH, cv2.IMWRITE_WEBP_QUALITY, 101),
    "webp-alpha": encode(".webp", np.dstack([SMOOTH, SMOOTH[..., :1]]), cv2.IMWRITE_WEBP_QUALITY, 90),
    "jpeg": encode(".jpg", SMOOTH),
    "jpeg-progressive": encode(".jpg", SMOOTH, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
}


@pytest.mark.parametrize("kind", sorted(ENCODED))
def test_header_size_is_width_then_height_for_every_encoder(kind):
    payload = ENCODED[kind]
    assert images.image_header_size(payload) == (WIDTH, HEIGHT)
    image = images.decode_image(payload)
    assert image.shape == (HEIGHT, WIDTH, 3)
    # Exactly width * height pixels pass the limit; one fewer allowed refuses before decoding.
    assert images.decode_image(payload, kind, max_pixels=WIDTH * HEIGHT).shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(DataError) as info:
        images.decode_image(payload, kind, max_pixels=WIDTH * HEIGHT - 1)
    assert str(info.value) == (
        f"Image too large: {kind} is {WIDTH}x{HEIGHT} pixels (at most {WIDTH * HEIGHT - 1} pixels are decoded)"
    )


def test_header_fields_at_their_bit_limits():
    """Hand-made headers: WebP's 14-bit fields with their scale bits, a top-down BMP, 3-byte VP8X sizes."""
    riff = b"RIFF" + bytes(4) + b"WEBP"
    vp8l = riff + b"VP8L" + bytes(5) + ((16384 - 1) | (9999 - 1) << 14 | 0b1011 << 28).to_bytes(4, "little")
    vp8 = riff + b"VP8 " + bytes(10) + struct.pack("<HH", 16383 | 0xC000, 12345 | 0x4000)
    vp8x = riff + b"VP8X" + bytes(8) + (70000 - 1).to_bytes(3, "little") + (2**24 - 1).to_bytes(3, "little")
    bmp = b"BM" + bytes(16) + struct.pack("<ii", -300, -517)
    gif = b"GIF87a" + struct.pack("<HH", 65535, 258)
    png = b"\x89PNG\r\n\x1a\n" + bytes(8) + struct.pack(">II", 2**31, 3)
    assert images.image_header_size(vp8l + bytes(8)) == (16384, 9999)
    assert images.image_header_size(vp8 + bytes(8)) == (16383, 12345)
    assert images.image_header_size(vp8x + bytes(8)) == (70000, 2**24)
    assert images.image_header_size(bmp) == (300, 517)
    assert images.image_header_size(gif) == (65535, 258)
    assert images.image_header_size(png) == (2**31, 3)
    # One byte short of the fields: unknown, left to the decoder.
    for short in (vp8l[:29], vp8[:29], vp8x[:29], bmp[:25], gif[:9], png[:23]):
        assert images.image_header_size(short) is None, short[:4]
    assert images.image_header_size(riff + b"VP8Q" + bytes(20)) is None
    assert images.image_header_size(b"RIFF" + bytes(4) + b"WAVE" + b"VP8X" + bytes(20)) is None
    assert images.image_header_size(b"GIF90a" + bytes(10)) is None
    assert images.image_header_size(b"\x00" * 64) is None
    # A huge claim is refused by the header, before decoding.
    with pytest.raises(DataError, match=r"is 16384x9999 pixels \(at most 134217728 pixels"):
        images.decode_image(vp8l + bytes(8), "vp8l", max_pixels=images.MAX_IMAGE_PIXELS)
    assert 16384 * 9999 > images.MAX_IMAGE_PIXELS


def sof(width: int, height: int, marker: int = 0xC0) -> bytes:
    """A frame header segment claiming width x height (one component)."""
    return bytes([0xFF, marker]) + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


SOI, EOI = b"\xff\xd8", b"\xff\xd9"


@pytest.mark.parametrize("marker", sorted(images._JPEG_SOF))
def test_every_frame_marker_gives_the_size_and_others_do_not(marker):
    app = segment(0xE1, bytes(20))
    assert images.image_header_size(SOI + app + sof(WIDTH, HEIGHT, marker) + EOI) == (WIDTH, HEIGHT)
    # The first frame header counts, and the walk stops there (a second one is not read).
    assert images.image_header_size(SOI + sof(WIDTH, HEIGHT, marker) + sof(7, 9) + EOI) == (WIDTH, HEIGHT)
    # DHT (C4), JPG (C8) and DAC (CC) share the Cx range but carry no size.
    for other in (0xC4, 0xC8, 0xCC, 0xE0):
        assert images.image_header_size(SOI + segment(other, bytes(8)) + EOI) is None


def test_jpeg_walk_ends_and_truncation():
    def walk(payload: bytes) -> tuple:
        return images._jpeg_walk(payload)

    frame = sof(WIDTH, HEIGHT)
    scan = segment(0xDA, bytes(10)) + b"\x12\x34\xff\x00\x56"
    assert walk(SOI) == (None, True)  # nothing after the start marker
    assert walk(SOI + frame + scan + EOI) == ((WIDTH, HEIGHT), False)
    assert walk(SOI + frame + scan) == ((WIDTH, HEIGHT), True)  # the scan without its end marker
    assert walk(SOI + frame + scan + b"\xff") == ((WIDTH, HEIGHT), True)
    assert walk(SOI + frame[:-1]) == ((WIDTH, HEIGHT), True)  # size read, then the segment is cut
    assert walk(SOI + frame[:8]) == (None, True)  # the size fields are cut: no size
    assert walk(SOI + b"\xff\xc0\x00") == (None, True)  # the length field is cut
    assert walk(SOI + b"\xff\xc0\x00\x0b") == (None, True)
    assert walk(SOI + b"\x00\x00" + frame) == (None, False)  # not a marker: left to the decoder
    assert walk(SOI + b"\xff" * 6) == (None, True)  # fill bytes, then the data ends
    assert walk(SOI + b"\xff" * 4 + b"\xd9") == (None, False)  # fill bytes before EOI
    assert walk(SOI + b"\xff" * 4097 + b"\xc0") == (None, False)  # a fill run too long: left to the decoder
    # Markers without a length field: TEM (01), RST0-7 (D0-D7), SOI (D8); a wrong class reads a length.
    assert walk(SOI + b"\xff\x01\xff\xd0\xff\xd7\xff\xd8" + EOI) == (None, False)
    for marker in (0x02, 0xCF, 0xDB):
        assert walk(SOI + bytes([0xFF, marker]) + EOI) == (None, True), hex(marker)
    # Up to _JPEG_MAX_SEGMENTS segments are walked; past that the rest is the decoder's.
    assert images._JPEG_MAX_SEGMENTS == 4096
    assert walk(SOI + b"\xff\x01" * 4095) == (None, True)
    assert walk(SOI + b"\xff\x01" * 4096) == (None, False)


def test_truncated_jpeg_is_refused_and_a_whole_one_read():
    payload = ENCODED["jpeg"]
    assert images.decode_image(payload).shape == (HEIGHT, WIDTH, 3)
    for cut in (payload[:-1], payload[:-2], payload[: len(payload) // 2]):
        with pytest.raises(DataError) as info:
            images.decode_image(cut, "cut.jpg")
        assert str(info.value) == (
            "Cannot decode image: cut.jpg (truncated JPEG: the data ends before the end-of-image marker)"
        )
    # Not a JPEG (no FF D8 start): the JPEG check is not applied, OpenCV decides.
    with pytest.raises(DataError, match=r"^Cannot decode image: x$"):
        images.decode_image(b"\xff\xd7" + payload[2:-2], "x")


@pytest.mark.parametrize("window", [2, 3, 4, 5, 7, 64])
def test_end_marker_search_agrees_with_bytes_find_in_every_window(window):
    payload = bytes(9) + EOI + bytes(3) + b"\xff" + bytes(2) + b"\xd9\xff"
    for start in range(len(payload) + 1):
        expected = payload.find(EOI, start) >= 0
        assert images._has_end_marker(payload, start, window) == expected, (start, window)
    for at in range(12):  # the pair at every position relative to the windows' edges
        payload = bytes(at) + EOI + bytes(11 - at)
        assert images._has_end_marker(payload, 0, window), (at, window)
        assert images._has_end_marker(payload, at, window), (at, window)
        assert not images._has_end_marker(payload, at + 1, window), (at, window)


def test_end_marker_search_default_window_is_one_mebibyte():
    # A pair that straddles the 1 MiB window's edge, counted from the end.
    payload = bytes(100) + EOI + bytes(2**20 - 1)
    assert images._has_end_marker(payload, 0)
    assert images._has_end_marker(payload, 100)
    assert not images._has_end_marker(payload, 101)


def test_to_bgr_uint8_conversions():
    rng = np.random.default_rng(3)
    gray16 = rng.integers(0, 2**16, (5, 7), dtype=np.uint16)
    bgra16 = rng.integers(0, 2**16, (5, 7, 4), dtype=np.uint16)
    bgra = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    gray1 = rng.integers(0, 256, (5, 7, 1), dtype=np.uint8)
    high = (gray16 >> 8).astype(np.uint8)
    np.testing.assert_array_equal(images.to_bgr_uint8(gray16), np.repeat(high[..., None], 3, axis=2))
    np.testing.assert_array_equal(images.to_bgr_uint8(bgra16), (bgra16[..., :3] >> 8).astype(np.uint8))
    np.testing.assert_array_equal(images.to_bgr_uint8(bgra), bgra[..., :3])
    np.testing.assert_array_equal(images.to_bgr_uint8(gray1), np.repeat(gray1, 3, axis=2))
    flipped = bgra[:, ::-1, :3]
    out = images.to_bgr_uint8(flipped)
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, flipped)
    for bad, message in [
        (
            np.zeros((5, 7, 3), np.float32),
            "Unsupported image dtype float32: t; pass uint8 BGR pixels 0-255 (or 16-bit)",
        ),
        (np.zeros((5, 7, 3), np.int16), "Unsupported image dtype int16: t; pass uint8 BGR pixels 0-255 (or 16-bit)"),
        (np.zeros((5, 7, 2), np.uint8), "Unsupported image shape (5, 7, 2): t"),
        (np.zeros((2, 5, 7, 3), np.uint8), "Unsupported image shape (2, 5, 7, 3): t"),
        (np.zeros((7,), np.uint8), "Unsupported image shape (7,): t"),
        (np.zeros((0, 7, 3), np.uint8), "Empty image (shape (0, 7, 3)): t"),
    ]:
        with pytest.raises(DataError) as info:
            images.to_bgr_uint8(bad, "t")
        assert str(info.value) == message
    with pytest.raises(DataError, match=r": image$"):
        images.to_bgr_uint8(np.zeros((5, 7, 2), np.uint8))


def test_read_image_refusals_name_the_file(tmp_path):
    with pytest.raises(DataError) as info:
        images.read_image(tmp_path)
    assert str(info.value) == f"Not a file: {tmp_path}"
    with pytest.raises(DataError, match=r"^Not a file: .*missing\.png$"):
        images.read_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as info:
        images.read_image(empty)
    assert str(info.value) == f"Empty file: {empty}"
    with pytest.raises(DataError, match=r"^Empty file: image$"):
        images.decode_image(b"")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: no disk used
        f.truncate(images.MAX_IMAGE_FILE_BYTES + 1)
    with pytest.raises(DataError) as info:
        images.read_image(huge)
    assert str(info.value) == f"Image file too large: {huge} (1073741825 bytes; at most 1073741824)"
    path = tmp_path / "w.png"
    path.write_bytes(ENCODED["png"])
    np.testing.assert_array_equal(images.read_image(str(path)), SMOOTH)
    with pytest.raises(DataError, match=f"^Image too large: {path} is 300x517 pixels"):
        images.read_image(path, max_pixels=1000)


def test_jpeg_walk_edges_found_by_mutation():
    frame = sof(WIDTH, HEIGHT)
    # A length over 255 needs both bytes of the length field.
    app = segment(0xE1, bytes(300))
    assert images.image_header_size(SOI + app + frame + EOI) == (WIDTH, HEIGHT)
    # The frame header's size fields end exactly at the data's end: still read.
    assert images.image_header_size(SOI + frame[:9]) == (WIDTH, HEIGHT)
    # A length field of 0 (less than its own 2 bytes) with nothing after it: not the truncation the walk
    # reports, a structure it does not expect, left to the decoder.
    assert images._jpeg_walk(SOI + b"\xff\xe0\x00\x00") == (None, False)
    # FF D9 inside the scan's header is not the end of the image: the search starts after that header.
    scan = segment(0xDA, b"\x01\xff\xd9" + bytes(7)) + b"\x12\x34"
    assert images._jpeg_walk(SOI + frame + scan) == ((WIDTH, HEIGHT), True)


def test_webp_headers_of_exactly_thirty_bytes_are_read():
    riff = b"RIFF" + bytes(4) + b"WEBP"
    vp8 = riff + b"VP8 " + bytes(10) + struct.pack("<HH", 640, 480)
    vp8x = riff + b"VP8X" + bytes(8) + (639).to_bytes(3, "little") + (479).to_bytes(3, "little")
    assert len(vp8) == len(vp8x) == 30
    assert images.image_header_size(vp8) == images.image_header_size(vp8x) == (640, 480)


def test_opencv_size_refusals_become_data_errors():
    """A format whose header the package does not read (PGM) reaches OpenCV's own size checks."""
    with pytest.raises(DataError) as info:
        images.decode_image(b"P5\n50000 50000\n255\n" + bytes(100), "huge.pgm")
    assert str(info.value) == "Image too large: huge.pgm (OpenCV decodes at most 2**30 pixels)"
    with pytest.raises(DataError) as info:
        images.decode_image(b"P5\n2000000 1\n255\n" + bytes(100), "wide.pgm")
    message = str(info.value)  # the last line of OpenCV's message, in brackets
    assert message.startswith("Cannot decode image: wide.pgm (OpenCV(") and "\n" not in message
    assert message.endswith("CV_IO_MAX_IMAGE_WIDTH in function 'validateInputImageSize')")


def test_file_size_limit_is_inclusive(tmp_path, monkeypatch):
    payload = ENCODED["png"]
    path = tmp_path / "w.png"
    path.write_bytes(payload)
    monkeypatch.setattr(images, "MAX_IMAGE_FILE_BYTES", len(payload))
    assert images.read_image(path).shape == (HEIGHT, WIDTH, 3)
    monkeypatch.setattr(images, "MAX_IMAGE_FILE_BYTES", len(payload) - 1)
    with pytest.raises(DataError, match=r"Image file too large: .*w\.png \(\d+ bytes; at most \d+\)$"):
        images.read_image(path)


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc/self/mem (a file read fails)")
def test_a_file_that_cannot_be_read_is_one_line():
    with pytest.raises(DataError) as info:
        images.read_image("/proc/self/mem")  # a regular file whose read fails with EIO
    assert str(info.value) == "Cannot read /proc/self/mem: Input/output error"
