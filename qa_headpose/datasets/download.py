"""Download and unpack FSA-Net's preprocessed ``data.zip`` (300W-LP, AFLW2000, BIWI crops). No TF.

Upstream (github.com/shamangary/FSA-Net, README "For lazy people"): one Google Drive
file, ``data.zip``, that replaces FSA-Net's ``data/`` folder. Its training and test
scripts read::

    type1/AFW.npz, AFW_Flip.npz, HELEN.npz, HELEN_Flip.npz,
          IBUG.npz, IBUG_Flip.npz, LFPW.npz, LFPW_Flip.npz   300W-LP (protocol 1 training)
    type1/AFLW2000.npz                                        protocol 1 test
    BIWI_noTrack.npz                                          protocol 1 test
    BIWI_train.npz, BIWI_test.npz                             protocol 2 (70/30)

Each npz holds ``image`` uint8 (n, 64, 64, 3) BGR crops and ``pose`` (n, 3) (yaw, pitch,
roll) degrees, the package convention (`data.load_fsanet_npz` reads them).

The archive's size and checksum are not published upstream, so a download is checked
by the zip's own CRC-32 of every member (`zipfile.ZipFile.testzip`), the presence of
every file above and, once unpacked, the ``image``/``pose`` headers of each npz.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from qa_headpose.core.errors import DataError

logger = logging.getLogger(__name__)

FSANET_DRIVE_ID = "1j6GMx33DCcbUOS8J3NHZ-BMHgk7H-oC_"
FSANET_URL = f"https://drive.google.com/file/d/{FSANET_DRIVE_ID}/view"
TYPE1_SUBSETS = ("AFW", "AFW_Flip", "HELEN", "HELEN_Flip", "IBUG", "IBUG_Flip", "LFPW", "LFPW_Flip")
TRAIN_FILES = tuple(f"type1/{name}.npz" for name in TYPE1_SUBSETS)
FSANET_FILES = TRAIN_FILES + ("type1/AFLW2000.npz", "BIWI_noTrack.npz", "BIWI_train.npz", "BIWI_test.npz")

Downloader = Callable[[Path], None]


class DownloadError(OSError):
    """The archive could not be fetched (no network, Drive quota, interrupted transfer)."""


def zip_path_for(out_dir: str | os.PathLike) -> Path:
    """Where the archive of ``out_dir`` is kept while it downloads: ``<out_dir>.zip`` beside it."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".zip")


_REASONS = (
    (("Failed to resolve", "NameResolutionError", "Name or service not known"), "cannot resolve drive.google.com"),
    (("timed out", "Timeout"), "the connection timed out"),
    (("Connection refused",), "the connection was refused"),
)


def _short_reason(exc: Exception) -> str:
    """One short clause for a failed download (requests errors nest long messages)."""
    text = " ".join(str(exc).split())
    for needles, reason in _REASONS:
        if any(n in text for n in needles):
            return f"{type(exc).__name__}: {reason} (no network?)"
    return f"{type(exc).__name__}: {text if len(text) <= 200 else text[:200].rsplit(' ', 1)[0] + ' ...'}"


def gdown_fsanet_zip(dest: Path, quiet: bool = True) -> None:
    """Fetches FSA-Net's data.zip from Google Drive with gdown, resuming a partial download.

    gdown keeps the partial file as ``<dest><8 chars>.part`` beside ``dest`` and
    continues it on the next call; a complete ``dest`` is not fetched again.

    Raises:
        DownloadError: if gdown is missing, Drive cannot be reached or the transfer fails.
    """
    try:
        import gdown
    except ImportError:
        raise DownloadError("gdown is not installed: pip install 'gdown>=5.2' (or the [train] extra)") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        gdown.download(id=FSANET_DRIVE_ID, output=str(dest), quiet=quiet, resume=True, timeout=(30, 300), retries=2)
    except Exception as exc:  # requests and gdown raise many types; all mean "not fetched"
        raise DownloadError(
            f"cannot download FSA-Net data.zip from Google Drive ({FSANET_URL}): {_short_reason(exc)}. "
            f"Fetch it in a browser and pass it with --zip, or retry later (a partial download resumes)"
        ) from None
    if not dest.is_file():
        raise DownloadError(f"gdown finished without writing {dest}")


def _layout_prefix(names: list[str], zip_path: Path) -> str:
    """The folder inside the zip that holds the FSA-Net layout ('' or e.g. 'data/')."""
    anchor = TRAIN_FILES[0]
    for name in names:
        if name == anchor or name.endswith("/" + anchor):
            return name[: len(name) - len(anchor)]
    # A truncated zip of stored npz files can end in an inner npz's directory and open as that.
    raise DataError(f"{zip_path} is not FSA-Net's data.zip, or the download is truncated: no {anchor} in it")


def _npy_header(npz: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) of one array of an open npz, from its .npy header only."""
    entry = f"{key}.npy"
    if entry not in npz.namelist():
        return None
    with npz.open(entry) as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(f)
    return tuple(shape), np.dtype(dtype)


def check_fsanet_folder(folder: str | os.PathLike) -> None:
    """Checks that a folder holds every file of `FSANET_FILES` as an FSA-Net npz.

    Reads only the .npy headers, so it is fast on the full data set.

    Raises:
        DataError: if a file is missing, is not an npz, or lacks a uint8 ``image``
            (n, H, W, 3) and a matching ``pose`` (n, 3).
    """
    folder = Path(folder)
    missing = [f for f in FSANET_FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {len(missing)} expected file(s): {', '.join(missing)}")
    for f in FSANET_FILES:
        try:
            with zipfile.ZipFile(folder / f) as npz:
                image, pose = _npy_header(npz, "image"), _npy_header(npz, "pose")
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise DataError(f"{f} is not a readable npz: {exc}") from None
        if image is None or pose is None:
            raise DataError(f"{f} lacks the 'image' or the 'pose' array")
        (ishape, idtype), (pshape, _) = image, pose
        if idtype != np.uint8 or len(ishape) != 4 or ishape[3] != 3 or tuple(pshape) != (ishape[0], 3):
            raise DataError(
                f"{f}: expected image uint8 (n, H, W, 3) and pose (n, 3). "
                f"Received: image {idtype} {ishape}, pose {pshape}"
            )


def check_fsanet_zip(zip_path: str | os.PathLike) -> str:
    """Checks that a zip is a complete, uncorrupted FSA-Net data.zip.

    Args:
        zip_path: the archive.

    Returns:
        The folder prefix of the layout inside the zip ('' or e.g. 'data/').

    Raises:
        DataError: if the file is missing, truncated or corrupt (bad CRC), has an unsafe
            member path, or lacks one of `FSANET_FILES`.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise DataError(f"Not a file: {zip_path}")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            for name in names:
                parts = PurePosixPath(name).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DataError(f"{zip_path} has an unsafe member path: {name!r}")
            bad = zf.testzip()
            if bad is not None:
                raise DataError(f"{zip_path} is corrupt: CRC mismatch in {bad}; delete it and download again")
            prefix = _layout_prefix(names, zip_path)
            missing = [f for f in FSANET_FILES if prefix + f not in names]
            if missing:
                raise DataError(f"{zip_path} lacks {len(missing)} expected file(s): {', '.join(missing)}")
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{zip_path} is not a readable zip (truncated or corrupt download?): {exc}") from None
    except OSError as exc:
        raise DataError(f"Cannot read {zip_path}: {exc}") from None
    return prefix


def extract_fsanet_zip(zip_path: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Checks the archive and unpacks its FSA-Net layout into ``out_dir``, atomically.

    The members are written into a temporary folder beside ``out_dir``, which is then
    renamed to ``out_dir``; a failure leaves neither a partial ``out_dir`` nor the
    temporary folder behind.

    Args:
        zip_path: FSA-Net's data.zip (its ``data/`` folder, or the layout at its top level).
        out_dir: the folder to create; it then holds ``type1/*.npz`` and ``BIWI_*.npz``.
        force: replace an existing ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        DataError: if the archive fails `check_fsanet_zip` or its files `check_fsanet_folder`.
        FileExistsError: if ``out_dir`` exists and ``force`` is False.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} already exists; pass --force to replace it")
    prefix = check_fsanet_zip(zip_path)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                if not info.filename.startswith(prefix) or info.is_dir():
                    continue
                target = tmp / info.filename[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        check_fsanet_folder(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def download_fsanet_data(
    out_dir: str | os.PathLike,
    zip_path: str | os.PathLike | None = None,
    force: bool = False,
    keep_zip: bool = False,
    downloader: Downloader | None = None,
) -> Path:
    """Gets FSA-Net's data.zip (resumable) and unpacks it into ``out_dir``.

    Args:
        out_dir: the folder to create (``type1/``, ``BIWI_noTrack.npz``, ...).
        zip_path: an already downloaded data.zip; nothing is fetched then, and it is kept.
        force: replace an existing ``out_dir``.
        keep_zip: keep the downloaded ``<out_dir>.zip`` after unpacking.
        downloader: callable(dest zip path) that fetches the archive; None uses
            `gdown_fsanet_zip`.

    Returns:
        ``out_dir``.

    Raises:
        DownloadError: if the archive cannot be fetched.
        DataError: if the archive is incomplete or corrupt.
        FileExistsError: if ``out_dir`` exists and ``force`` is False.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} already exists; pass --force to replace it")
    if zip_path is not None:
        return extract_fsanet_zip(zip_path, out_dir, force)
    dest = zip_path_for(out_dir)
    (downloader or gdown_fsanet_zip)(dest)
    try:
        extract_fsanet_zip(dest, out_dir, force)
    except DataError as exc:
        raise DataError(f"{exc} (downloaded file: {dest}; delete it to download again)") from None
    if not keep_zip:
        dest.unlink(missing_ok=True)
    return out_dir
