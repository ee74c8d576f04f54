"""Schemathesis hooks for ``qa-headpose serve``: the image media types are generated as real images.

A JSON schema cannot say "a decodable JPEG", so without these the fuzzer's schema-valid bodies are random bytes
that the API rightly refuses (415/400). With them every positive case is an image, of random size and pixels,
sometimes the sample face, in the format its media type names; malformed images are the hostile suite's job.

    SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=tools schemathesis run http://127.0.0.1:8000/openapi.json
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import schemathesis
from hypothesis import strategies as st

SAMPLE = Path(__file__).resolve().parents[1] / "qa_headpose" / "assets" / "astronaut.jpg"


def _images(ext: str) -> st.SearchStrategy[bytes]:
    def encode(args: tuple[int, int, int, bool]) -> bytes:
        height, width, seed, face = args
        if face:
            image = cv2.imread(str(SAMPLE))
        else:
            image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        return cv2.imencode(ext, image)[1].tobytes()

    sizes = st.tuples(st.integers(1, 96), st.integers(1, 96), st.integers(0, 2**16), st.booleans())
    return sizes.map(encode)


for _kind, _ext in (("jpeg", ".jpg"), ("png", ".png"), ("webp", ".webp")):
    schemathesis.openapi.media_type(f"image/{_kind}", _images(_ext))
