"""FSA-Net data.zip: layout check, atomic unpacking, loaders and CLI, on tiny generated zips. No network."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from qa_headpose import cli
from qa_headpose.core.errors import DataError
from qa_headpose.datasets import download
from qa_headpose.datasets.load import load_faces
from qa_headpose.training import workflow

N = 4  # faces per tiny npz


def _npz_bytes(seed: int, n: int = N, pose_shape: tuple[int, ...] | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    pose = rng.uniform(-60, 60, pose_shape or (n, 3)).astype(np.float64)  # FSA-Net stores float64
    buffer = io.BytesIO()
    np.savez(buffer, image=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8), pose=pose, img_size=64)
    return buffer.getvalue()


def _make_zip(path, prefix="data/", skip=(), replace=None, extra=(), compression=zipfile.ZIP_STORED):
    """A data.zip in FSA-Net's layout with tiny npz files (stored by default, so bytes can be flipped)."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        if prefix:
            zf.writestr(prefix, b"")
        for i, name in enumerate(download.FSANET_FILES):
            if name not in skip:
                zf.writestr(prefix + name, (replace or {}).get(name) or _npz_bytes(i))
        for name in extra:
            zf.writestr(name, b"x")
    return path


def _no_leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_extract_gives_the_fsanet_layout_and_loaders_read_it(tmp_path):
    archive = _make_zip(tmp_path / "data.zip", extra=["data/TYY_create_db_biwi.py"])
    out = download.extract_fsanet_zip(archive, tmp_path / "fsanet")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.npz")) == sorted(download.FSANET_FILES)
    assert (out / "TYY_create_db_biwi.py").is_file()
    assert _no_leftovers(tmp_path) == []
    faces = load_faces(out / "BIWI_noTrack.npz")
    assert len(faces) == N and faces.crops(32).shape == (N, 32, 32, 3)

    # `qa-headpose train --data <type1 subsets> --val-data <AFLW2000.npz>`: parsing and data preparation.
    train_files = [str(out / f) for f in download.TRAIN_FILES]
    args = cli.build_parser().parse_args(
        ["train", "--data", *train_files, "--val-data", str(out / "type1/AFLW2000.npz"), "--out", str(tmp_path / "run")]
    )
    prepared = workflow.prepare_data(args.data, args.val_data, None, 99.0)
    assert prepared.report["train_faces"] == N * len(download.TRAIN_FILES)
    assert prepared.report["val_faces"] == N
    assert prepared.report["split"] == "separate val data"
    assert prepared.train.poses.shape == (N * 8, 3) and prepared.train.poses.dtype == np.float32


def test_layout_at_the_zip_top_level(tmp_path):
    out = download.extract_fsanet_zip(_make_zip(tmp_path / "flat.zip", prefix=""), tmp_path / "out")
    download.check_fsanet_folder(out)
    assert (out / "type1" / "AFLW2000.npz").is_file()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_truncated_zip_is_rejected(tmp_path, compression):
    archive = _make_zip(tmp_path / "data.zip", compression=compression)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated"):
        download.extract_fsanet_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _no_leftovers(tmp_path) == []


def test_corrupt_member_fails_the_crc_check(tmp_path):
    archive = _make_zip(tmp_path / "data.zip")
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("data/BIWI_train.npz")
    data = bytearray(archive.read_bytes())
    # Local header: 30 bytes + name + extra field, then the stored member bytes.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="CRC mismatch in data/BIWI_train.npz"):
        download.check_fsanet_zip(archive)


def test_zip_missing_expected_files(tmp_path):
    archive = _make_zip(tmp_path / "data.zip", skip=("BIWI_test.npz", "type1/IBUG_Flip.npz"))
    with pytest.raises(DataError, match=r"lacks 2 expected file\(s\): type1/IBUG_Flip.npz, BIWI_test.npz"):
        download.extract_fsanet_zip(archive, tmp_path / "out")
    other = _make_zip(tmp_path / "other.zip", skip=("type1/AFW.npz",))
    with pytest.raises(DataError, match="not FSA-Net's data.zip"):
        download.check_fsanet_zip(other)
    assert _no_leftovers(tmp_path) == []


def test_bad_npz_content_leaves_nothing_behind(tmp_path):
    archive = _make_zip(tmp_path / "data.zip", replace={"type1/HELEN.npz": _npz_bytes(0, pose_shape=(N, 2))})
    with pytest.raises(DataError, match=r"type1/HELEN.npz: expected image uint8 \(n, H, W, 3\) and pose \(n, 3\)"):
        download.extract_fsanet_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _no_leftovers(tmp_path) == []


def test_unsafe_member_path_is_rejected(tmp_path):
    archive = _make_zip(tmp_path / "data.zip", extra=["data/../../evil.txt"])
    with pytest.raises(DataError, match="unsafe member path"):
        download.extract_fsanet_zip(archive, tmp_path / "out")


def test_existing_output_needs_force(tmp_path):
    archive = _make_zip(tmp_path / "data.zip")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="--force"):
        download.extract_fsanet_zip(archive, out)
    download.extract_fsanet_zip(archive, out, force=True)
    assert not (out / "old.txt").exists() and (out / "BIWI_noTrack.npz").is_file()
    assert _no_leftovers(tmp_path) == []


def test_download_then_unpack_with_a_fake_downloader(tmp_path):
    calls = []

    def fetch(dest):
        calls.append(dest)
        _make_zip(dest)

    out = download.download_fsanet_data(tmp_path / "fsanet", downloader=fetch)
    assert calls == [tmp_path / "fsanet.zip"] and not calls[0].exists()  # removed once unpacked
    download.check_fsanet_folder(out)

    def fetch_truncated(dest):
        _make_zip(dest)
        dest.write_bytes(dest.read_bytes()[:1000])

    with pytest.raises(DataError, match="delete it to download again"):
        download.download_fsanet_data(tmp_path / "again", downloader=fetch_truncated)
    assert (tmp_path / "again.zip").exists() and not (tmp_path / "again").exists()


def test_gdown_is_called_resumable_and_failures_are_one_line(tmp_path, monkeypatch, capsys):
    gdown = pytest.importorskip("gdown")
    import requests

    seen = {}

    def unreachable(**kwargs):
        seen.update(kwargs)
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='drive.google.com', port=443): Max retries exceeded\n(Failed to resolve)"
        )

    monkeypatch.setattr(gdown, "download", unreachable)
    code = cli.main(["data", "download", "--out", str(tmp_path / "fsanet")])
    assert code == cli.EXIT_FAILURE
    assert seen["id"] == download.FSANET_DRIVE_ID and seen["resume"] is True
    assert seen["output"] == str(tmp_path / "fsanet.zip")
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("qa-headpose data: error: cannot download FSA-Net data.zip from Google Drive")
    assert "ConnectionError" in err and "--zip" in err
    assert not (tmp_path / "fsanet").exists()


def test_cli_unpacks_a_local_zip(tmp_path, capsys):
    archive = _make_zip(tmp_path / "data.zip")
    out = tmp_path / "fsanet"
    assert cli.main(["data", "download", "--out", str(out), "--zip", str(archive)]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "--val-data" in printed
    assert archive.exists()  # a given --zip is kept
    assert cli.main(["data", "download", "--out", str(out), "--zip", str(archive)]) == cli.EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    assert cli.main(["data", "download", "--out", str(tmp_path / "x"), "--zip", str(bad)]) == cli.EXIT_USAGE
    assert "not a readable zip" in capsys.readouterr().err
