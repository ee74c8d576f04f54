"""``predict`` on Ray Data: images from folders, file lists or Parquet of bytes -> poses, across a cluster. No TF.

`read_inputs` makes a `ray.data.Dataset` of inputs (columns ``path``, ``kind``, ``bytes``,
``error``): the images of folders and of file lists (one path a line), or the rows of
Parquet files with a ``path`` string column and a ``bytes`` binary column (the layout of
``ray.data.read_binary_files(..., include_paths=True)``). `estimate_poses` maps it with
`map_batches` over a pool of actors, each holding one `HeadPoseEstimator` built once
from the run's `PredictConfig` (the settings travel, not the models), and gives one row
per face: ``path`` (the input's absolute path, or the Parquet row's path) then the
columns of ``predict --csv`` (`formats.COLUMNS`), then ``error``. An input without a
face gives one row with ``face`` null; an input that fails gives one row with its
one-line ``error`` and nulls: no input is ever dropped. `run_ray` is the command's run
(``predict ... --ray auto|ADDRESS --out poses.parquet``): it connects, maps, and writes
one Parquet file atomically from the driver, in input order.

A video is one input, read start to end by one actor (tracking needs its frames in
order); a cluster spreads many videos, not the frames of one. Ray retries the tasks of
an actor whose node dies; a batch's rows are emitted once, when its task succeeds.
Needs the optional extra: ``pip install 'qa-headpose[ray]'`` on the driver and on every node.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from qa_headpose.core.atomic import atomic_path
from qa_headpose.predict.config import STATUS_FAILED, STATUS_OK, STATUS_PARTIAL, PredictConfig
from qa_headpose.predict.formats import COLUMNS, make_row
from qa_headpose.predict.one_input import INPUT_ERRORS, decode_image, make_estimator, one_line, run_source
from qa_headpose.predict.sources import Source, collect_sources

logger = logging.getLogger(__name__)

RAY_COLUMNS = ("path", *COLUMNS, "error")
# Inputs per map_batches call: few enough that a lost node costs little work and the actors stay balanced, enough
# that Ray's cost per call stays small (8 gave 97.7 images/s on 2 local nodes, 32 gave 120.2: docs/scale.md).
BATCH_SIZE = 32
LIST_SUFFIXES = (".txt", ".lst")


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("Ray Data is not installed: pip install 'qa-headpose[ray]'") from None
    return ray


def schema():
    """The pyarrow schema of the pose rows (`RAY_COLUMNS`); every column but ``path`` and ``file`` nullable."""
    import pyarrow as pa

    types = {"path": pa.string(), "file": pa.string(), "frame": pa.int64(), "face": pa.int64()}
    types.update({name: pa.float64() for name in ("x0", "y0", "x1", "y1", "score", "yaw", "pitch", "roll")})
    types.update({"saturated": pa.bool_(), "error": pa.string()})
    return pa.schema([pa.field(name, types[name], nullable=name not in ("path", "file")) for name in RAY_COLUMNS])


def _input_schema():
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("kind", pa.string()), ("bytes", pa.binary()), ("error", pa.string())])


def _listed(path: Path) -> list[str]:
    """The paths in a file list, one a line (blank lines and # comments skipped), relative to the list's folder."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [str(path.parent / line) for line in lines if line and not line.startswith("#")]


def _parquet_files(inputs: Sequence[str]) -> list[str]:
    """The inputs that are Parquet files (read with Ray's reader; any other input is a path)."""
    return [p for p in inputs if str(p).lower().endswith(".parquet")]


def read_inputs(inputs: Sequence[str]):
    """A `ray.data.Dataset` of the inputs, one row each: ``path``, ``kind``, ``bytes`` (or null), ``error``.

    Args:
        inputs: folders of images, image or video files, file lists (``.txt``/``.lst``, one
            path a line), or else Parquet files (``.parquet``) with ``path`` and ``bytes`` columns.
            Parquet and paths are not mixed in one run.

    Returns:
        The dataset; missing paths and folders without images are rows with their ``error``.

    Raises:
        ImportError: without Ray Data.
        ValueError: for Parquet mixed with other inputs, or no input at all.
    """
    _require_ray()
    import pyarrow as pa
    import ray.data

    if not inputs:
        raise ValueError("Give the inputs to run on Ray: folders, images, videos, file lists or Parquet files")
    parquet = _parquet_files(inputs)
    if parquet and len(parquet) != len(inputs):
        raise ValueError(f"Give either Parquet files or image paths, not both. Received: {list(inputs)}")
    if parquet:
        # Reading takes no CPU slot: the pose actors hold one each, and a read waiting for a slot would never run.
        ds = ray.data.read_parquet(list(parquet), columns=["path", "bytes"], ray_remote_args={"num_cpus": 0})
        return ds.map_batches(_as_input, batch_format="pyarrow", batch_size=BATCH_SIZE, num_cpus=0)
    expanded: list[str] = []
    for text in inputs:
        path = Path(text)
        expanded += _listed(path) if path.is_file() and path.suffix.lower() in LIST_SUFFIXES else [text]
    sources, bad = collect_sources(expanded)
    rows = [{"path": os.path.abspath(s.path), "kind": s.kind, "bytes": None, "error": None} for s in sources]
    rows += [{"path": os.path.abspath(r.name), "kind": r.kind, "bytes": None, "error": r.error} for r in bad]
    table = pa.Table.from_pylist(rows, schema=_input_schema())
    # One block per batch, so the actors share the work from the start (one block would feed one actor).
    return ray.data.from_arrow([table.slice(i, BATCH_SIZE) for i in range(0, max(len(rows), 1), BATCH_SIZE)])


def _as_input(table):
    """Parquet rows (``path``, ``bytes``) as input rows: images, no error yet."""
    import pyarrow as pa

    n = table.num_rows
    columns = [table["path"].cast(pa.string()), pa.array(["image"] * n), table["bytes"].cast(pa.binary())]
    return pa.Table.from_arrays([*columns, pa.nulls(n, pa.string())], schema=_input_schema())


def _row(path: str, name: str, error: str | None) -> dict[str, Any]:
    """The row of an input without a face (error None) or that failed."""
    return {"path": path, "file": name, **{k: None for k in COLUMNS[1:]}, "error": error}


def pose_rows(estimator, item: dict[str, Any], cfg: PredictConfig) -> list[dict[str, Any]]:
    """The rows (`RAY_COLUMNS`) of one input row of `read_inputs`: one per face, or one for no face or an error."""
    path, kind = item["path"], item.get("kind") or "image"
    name = path
    if item.get("error"):
        return [_row(path, name, item["error"])]
    if kind == "image":
        try:
            image = decode_image(Path(path), item.get("bytes"))
            new = [make_row(name, 0, r) for r in estimator.predict_image(image, cfg.max_faces)]
        except INPUT_ERRORS as exc:
            return [_row(path, name, one_line(exc))]
    else:
        new, report = run_source(estimator, Source(kind, name, Path(path)), None, cfg, lambda row: None)
        if report.error:
            return [_row(path, name, report.error)]
    return [{"path": path, **row, "error": None} for row in new] or [_row(path, name, None)]


class PoseActor:
    """A Ray Data actor: one `HeadPoseEstimator` (built once from ``cfg``) mapping input batches to pose rows."""

    cfg = PredictConfig(threads=1)  # what a subclass made by `_actor_class` carries

    def __init__(self, cfg: PredictConfig | None = None) -> None:
        self.cfg = cfg or self.cfg
        self.estimator = make_estimator(self.cfg)

    def __call__(self, batch):
        """A pyarrow table of input rows -> a pyarrow table of pose rows (`schema`)."""
        import pyarrow as pa

        rows = [row for item in batch.to_pylist() for row in pose_rows(self.estimator, item, self.cfg)]
        return pa.Table.from_pylist(rows, schema=schema())


def estimate_poses(
    ds,
    cfg: PredictConfig | None = None,
    concurrency: int | None = None,
    batch_size: int = BATCH_SIZE,
    all_actors_at_once: bool = False,
):
    """Head poses of a `ray.data.Dataset` of inputs, one `HeadPoseEstimator` per actor.

    Args:
        ds: rows with a ``path`` column (str) and optionally ``bytes`` (the encoded image;
            null reads the file at ``path``, which every node must then see), ``kind``
            ("image" or "video"; default "image") and ``error`` (a known failure); e.g.
            `read_inputs`, or ``ray.data.read_binary_files(paths, include_paths=True)``.
        cfg: model, detector, threads, max_faces, min_score, mirror, smooth and max_frames
            of the run (`PredictConfig`); None for the defaults with 1 interpreter thread.
        concurrency: most actors (each takes 1 CPU); None for one per CPU of the cluster. The
            pool starts with one and grows while inputs wait, so the tasks that read ``ds``
            still find a CPU slot.
        batch_size: inputs per actor call.
        all_actors_at_once: start every actor at once instead of growing the pool; only for a ``ds``
            whose blocks are already in the object store (`read_inputs` of paths), as nothing then
            waits for a CPU slot to read.

    Returns:
        A lazy `ray.data.Dataset` of pose rows (`RAY_COLUMNS`, `schema`); nothing runs until
        it is consumed (``.write_parquet(...)``, ``.iter_batches()``, ...).

    Raises:
        ImportError: without Ray Data.
    """
    ray = _require_ray()
    cfg = cfg or PredictConfig(threads=1)
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return ds.map_batches(
        _actor_class(cfg),
        batch_format="pyarrow",
        batch_size=batch_size,
        # From one actor up: a fixed pool as large as the cluster would hold every CPU slot, and a read
        # or file-listing task that needs one (Parquet, read_binary_files) would then wait forever.
        compute=ray.data.ActorPoolStrategy(min_size=concurrency if all_actors_at_once else 1, max_size=concurrency),
        num_cpus=1,
    )


def _actor_class(cfg: PredictConfig) -> type:
    # The settings ride in the class, pickled with it, rather than as constructor arguments: Ray keeps
    # those in the object store and warns on stderr that a restarted actor could lose them.
    return type("ConfiguredPoseActor", (PoseActor,), {"cfg": cfg})


@dataclasses.dataclass
class RaySummary:
    """What `run_ray` did: inputs, those that failed, faces found, pose rows written, seconds."""

    inputs: int
    failed: int
    faces: int
    rows: int
    seconds: float

    @property
    def status(self) -> int:
        """The exit status, as `PredictSummary.status`: all failed 2; some failed or no face 1; else 0."""
        if not self.inputs or self.failed == self.inputs:
            return STATUS_FAILED
        return STATUS_PARTIAL if self.failed or not self.faces else STATUS_OK


def connect(address: str) -> None:
    """Connects this process to a Ray cluster: "auto" (the one started on this machine), "local"
    (a new one in this process) or an address such as ``ray://head:10001`` or ``head:6379``."""
    ray = _require_ray()
    if not ray.is_initialized():
        kwargs = {"log_to_driver": False, "logging_level": logging.ERROR}
        ray.init(address=None if address == "local" else address, **kwargs)
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)


def run_ray(
    cfg: PredictConfig,
    address: str,
    out: str | os.PathLike,
    concurrency: int | None = None,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> RaySummary:
    """``predict --ray``: the inputs of ``cfg`` on a Ray cluster, the pose rows written to one Parquet file.

    Args:
        cfg: the run's `PredictConfig` (inputs as `read_inputs` takes them).
        address: the cluster (`connect`).
        out: the Parquet file, written atomically, rows in input order.
        concurrency: actors; None for one per CPU of the cluster.
        on_progress: called with ("inputs", inputs done, inputs) as rows arrive.

    Returns:
        `RaySummary`.

    Raises:
        ImportError: without Ray Data. ValueError: see `read_inputs`.
        ConnectionError: if no cluster answers at ``address``.
    """
    import time

    import pyarrow.parquet as pq
    import ray.data

    start = time.perf_counter()
    try:
        connect(address)
    except ConnectionError as exc:
        raise ConnectionError(f"No Ray cluster at --ray {address}: {one_line(exc)}") from None
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in input order, as --jobs gives them
    context.enable_progress_bars = False
    inputs = read_inputs(cfg.inputs)
    total = inputs.count()
    progress = on_progress or (lambda stage, done, n: None)
    seen: set[str] = set()
    failed: set[str] = set()
    faces = rows = 0
    with atomic_path(out) as tmp:
        writer = pq.ParquetWriter(tmp, schema())
        try:
            in_store = not _parquet_files(cfg.inputs)  # read_inputs' blocks of paths are in the object store
            poses = estimate_poses(inputs, cfg, concurrency, all_actors_at_once=in_store)
            for batch in poses.iter_batches(batch_format="pyarrow", batch_size=None):
                writer.write_table(batch.cast(schema()))
                rows += batch.num_rows
                for path, face, error in zip(*(batch[c].to_pylist() for c in ("path", "face", "error"))):
                    seen.add(path)
                    faces += face is not None
                    if error:
                        failed.add(path)
                progress("inputs", len(seen), total)
        finally:
            writer.close()
    return RaySummary(total, len(failed), faces, rows, time.perf_counter() - start)
