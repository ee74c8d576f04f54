"""Image decoding: bytes or a file -> uint8 BGR (H, W, 3), with bounds on size checked before decoding."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np

from qa_headpose.core.errors import DataError

# Images with more pixels are refused before decoding (2**27 = 134 megapixels, 400 MB as
# BGR): a few hundred bytes of PNG can claim 20000x20000 pixels and inflate to 1.2 GB.
MAX_IMAGE_PIXELS = 2**27


# Image files larger than this are not read at all.
MAX_IMAGE_FILE_BYTES = 2**30


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), which carry the size.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
# Fill bytes before a marker; a real JPEG has a few, a longer run is left to the decoder.
_JPEG_FILL = re.compile(rb"\xff{1,4096}")
# A real JPEG has tens of segments; past this many the walk stops and the rest is left to the decoder.
_JPEG_MAX_SEGMENTS = 4096


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Reads an image file as uint8 BGR (H, W, 3).

    Grayscale is expanded to 3 channels, alpha is dropped, 16-bit is scaled to 8-bit, and
    a JPEG's EXIF orientation is applied (a phone photo tagged "rotate 90" comes upright).
    The size in a PNG, JPEG, BMP, GIF or WebP header is checked before decoding, so
    a small file that claims 20000x20000 pixels is refused without allocating them.

    Args:
        path: the image file (any file name, non-ASCII included).
        max_pixels: refuse images with more pixels than this (`MAX_IMAGE_PIXELS`).

    Raises:
        DataError: if the file is missing, a folder, empty, over `MAX_IMAGE_FILE_BYTES`,
            truncated (JPEG without its end marker), larger than ``max_pixels`` or not a
            decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Not a file: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_FILE_BYTES:
            raise DataError(f"Image file too large: {path} ({size} bytes; at most {MAX_IMAGE_FILE_BYTES})")
        payload = path.read_bytes()  # also reads non-ASCII paths, unlike cv2.imread
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}") from None
    if not payload:
        raise DataError(f"Empty file: {path}")
    return decode_image(payload, str(path), max_pixels)


def decode_image(payload: bytes, what: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decodes an encoded image (the bytes of a file) to uint8 BGR (H, W, 3), as `read_image`.

    Memory: the decoded image is 3 bytes per pixel, at most ``3 * max_pixels`` bytes.

    Raises:
        DataError: if the bytes are empty, truncated, too large or not a decodable image.
    """
    if not payload:
        raise DataError(f"Empty file: {what}")
    header = image_header_size(payload)
    if header is not None and header[0] * header[1] > max_pixels:
        raise DataError(
            f"Image too large: {what} is {header[0]}x{header[1]} pixels (at most {max_pixels} pixels are decoded)"
        )
    if payload[:2] == b"\xff\xd8" and _jpeg_is_truncated(payload):
        raise DataError(f"Cannot decode image: {what} (truncated JPEG: the data ends before the end-of-image marker)")
    try:
        # IMREAD_COLOR: 3 bytes per pixel whatever the file's depth and channels (16-bit is cut to its high
        # byte, alpha dropped, gray repeated), and the EXIF orientation applied, as cv2.imread and browsers do.
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        text = str(exc).strip().splitlines()
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise DataError(f"Image too large: {what} (OpenCV decodes at most 2**30 pixels)") from None
        raise DataError(f"Cannot decode image: {what} ({text[-1] if text else 'OpenCV error'})") from None
    except MemoryError:
        raise DataError(f"Image too large to decode: {what}") from None
    if image is None or image.size == 0:
        raise DataError(f"Cannot decode image: {what}")
    return to_bgr_uint8(image, what)


def image_header_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP, GIF or WebP header without decoding; None if unknown."""
    head = payload[:64]
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        kind = head[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if kind == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            width, height = struct.unpack("<HH", head[26:30])
            return width & 0x3FFF, height & 0x3FFF
    if head[:2] == b"\xff\xd8":
        return _jpeg_walk(payload, stop_at_frame=True)[0]
    return None


def _jpeg_is_truncated(payload: bytes) -> bool:
    return _jpeg_walk(payload)[1]


def _jpeg_walk(payload: bytes, stop_at_frame: bool = False) -> tuple[tuple[int, int] | None, bool]:
    """Walks a JPEG's markers: ((width, height) of the first frame header or None, truncated?).

    Truncated means the data ran out before the end-of-image marker (libjpeg would fill
    the rest of the image with grey): after the first scan starts, FF D9 can only be that
    marker (the scan stuffs every FF it holds), so one `bytes.find` answers. A structure the
    walk does not expect, or over `_JPEG_MAX_SEGMENTS` segments before the scan, is left to
    the decoder (not truncated). The cost is linear in the bytes, in C, with at most
    `_JPEG_MAX_SEGMENTS` steps of Python. With ``stop_at_frame`` the walk ends at the first
    frame header (only the size is wanted).
    """
    n, pos, size = len(payload), 2, None
    for _ in range(_JPEG_MAX_SEGMENTS):
        if pos >= n:
            return size, True
        if payload[pos] != 0xFF:
            return size, False
        pos = _JPEG_FILL.match(payload, pos).end()
        if pos >= n:
            return size, True
        if payload[pos] == 0xFF:
            return size, False
        marker = payload[pos]
        pos += 1
        if marker == 0xD9:  # end of image
            return size, False
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            continue
        if pos + 2 > n:
            return size, True
        length = (payload[pos] << 8) | payload[pos + 1]
        if marker in _JPEG_SOF and size is None and pos + 7 <= n:
            size = ((payload[pos + 5] << 8) | payload[pos + 6], (payload[pos + 3] << 8) | payload[pos + 4])
            if stop_at_frame:
                return size, False
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data and later scans
            return size, not _has_end_marker(payload, pos + length)
        pos += length
    return size, False


def _has_end_marker(payload: bytes, start: int, window: int = 2**20) -> bool:
    """Whether FF D9 occurs in ``payload[start:]``; numpy, a window at a time from the end (EOI is usually
    last), so the cost is linear and the GIL is free while it runs (bytes.find holds it, 20 ns a byte on FFs)."""
    data = np.frombuffer(payload, np.uint8)
    hi = len(data)
    while hi - start >= 2:
        lo = max(start, hi - window)
        part = data[lo:hi]
        if np.any((part[:-1] == 0xFF) & (part[1:] == 0xD9)):
            return True
        hi = lo + 1  # the pair across the window's edge is in the next window
    return False


def to_bgr_uint8(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Converts a decoded image (gray, BGR, BGRA; 8 or 16 bit) to uint8 BGR.

    Raises:
        DataError: for another dtype (float included) or shape, or an empty image.
    """
    if image.size == 0:
        raise DataError(f"Empty image (shape {image.shape}): {what}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"Unsupported image dtype {image.dtype}: {what}; pass uint8 BGR pixels 0-255 (or 16-bit)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"Unsupported image shape {image.shape}: {what}")
    return np.ascontiguousarray(image)
