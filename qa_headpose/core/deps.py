"""What to ``pip install`` for a module that failed to import: the pin comes from the installed package's metadata.

setup.cfg is the one home of the requirement pins; once installed, ``importlib.metadata`` reads them back, so the
hint names the same pin (and the extra that carries it) without a second copy here.
"""

from __future__ import annotations

import importlib.metadata
import re

DISTRIBUTION = "qa-headpose"
# Import names whose distribution is named otherwise; any other name maps to itself with "_" -> "-".
_DISTRIBUTION_OF_MODULE = {
    "cv2": "opencv-python-headless",
    "yaml": "pyyaml",
    "PIL": "pillow",
}


def distribution_of(module: str) -> str:
    """The pip distribution that provides the top-level module of ``module`` (e.g. ``cv2.dnn`` -> opencv...)."""
    top = module.split(".")[0]
    return _DISTRIBUTION_OF_MODULE.get(top, top.replace("_", "-"))


def _requirements() -> list[str]:
    try:
        return importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without an install
        return []


def install_hint(module: str) -> str:
    """The pip command that installs ``module`` as qa-headpose pins it, e.g. ``pip install 'numpy>=1.26'``.

    Args:
        module: the import name that failed (``ModuleNotFoundError.name``).

    Returns:
        One line: the pinned requirement and, where an extra carries it, that extra.
    """
    wanted = distribution_of(module).lower()
    for line in _requirements():
        spec, _, marker = line.partition(";")
        name = re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0].lower()
        if name.replace("_", "-") != wanted:
            continue
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        command = f"pip install '{spec.strip()}'"
        return command + (
            f" (or the [{extra.group(1)}] extra: pip install 'qa-headpose[{extra.group(1)}]')" if extra else ""
        )
    return f"pip install {wanted}"


def missing_dependency_message(exc: ImportError) -> str:
    """One line for an import that failed: which module, and the pip command that installs it."""
    name = getattr(exc, "name", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not name or "pip install" in text:  # the raiser already said what to install
        return f"missing dependency: {text}"
    return f"missing dependency: {text}; install it with: {install_hint(name)}"
