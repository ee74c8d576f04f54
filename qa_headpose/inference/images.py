"""Image decoding: bytes or a file -> uint8 BGR (H, W, 3), with bounds on size checked before decoding."""

from __future__ import annotations

import os
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


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Reads an image file as uint8 BGR (H, W, 3).

    Grayscale is expanded to 3 channels, alpha is dropped, 16-bit is scaled to 8-bit.
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
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
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
        return _jpeg_walk(payload)[0]
    return None


def _jpeg_is_truncated(payload: bytes) -> bool:
    return _jpeg_walk(payload)[1]


def _jpeg_walk(payload: bytes) -> tuple[tuple[int, int] | None, bool]:
    """Walks a JPEG's markers: ((width, height) of the first frame header or None, truncated?).

    Truncated means the data ran out before the end-of-image marker (libjpeg would fill
    the rest of the image with grey); a structure the walk does not expect is left to
    the decoder (not truncated).
    """
    n, pos, size = len(payload), 2, None
    while True:
        if pos >= n:
            return size, True
        if payload[pos] != 0xFF:
            return size, False
        while pos < n and payload[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return size, True
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
        pos += length
        if marker == 0xDA:  # entropy-coded data up to the next marker that is not FF00 or a restart
            while True:
                pos = payload.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return size, True
                following = payload[pos + 1]
                if following == 0xFF:
                    pos += 1
                elif following == 0x00 or 0xD0 <= following <= 0xD7:
                    pos += 2
                else:
                    break


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
