"""A missing dependency names the pip command with setup.cfg's pin (read back from the installed metadata)."""

from __future__ import annotations

import configparser

import pytest
from conftest import REPO

from qa_headpose.core import deps


def _pins() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = [("", line) for line in cfg["options"]["install_requires"].split()]
    lines += [(extra, line) for extra, block in cfg["options.extras_require"].items() for line in block.split()]
    return {line: extra for extra, line in lines}


@pytest.mark.parametrize(
    "module, distribution",
    [
        ("cv2", "opencv-python-headless"),
        ("tensorflow", "tensorflow"),
        ("ai_edge_litert", "ai-edge-litert"),
        ("httptools", "httptools"),
    ],
)
def test_install_hint_names_the_pin_and_its_extra(module, distribution):
    pins = _pins()
    (pin,) = [p for p in pins if p.split("=")[0].split(">")[0] == distribution][:1]
    hint = deps.install_hint(module)
    assert hint.startswith(f"pip install '{pin}'"), hint
    assert (f"[{pins[pin]}]" in hint) == bool(pins[pin]), hint


def test_message_keeps_a_hint_the_raiser_gave():
    exc = ModuleNotFoundError("No module named 'cv2'", name="cv2")
    assert deps.missing_dependency_message(exc).endswith("install it with: pip install 'opencv-python-headless>=4.9'")
    given = ImportError("LiteRT is not installed: `pip install ai-edge-litert`.")
    assert deps.missing_dependency_message(given) == f"missing dependency: {given}"
