"""The rows of ``predict`` (`COLUMNS`) and their formats: the terminal table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from qa_headpose.core.atomic import write_bytes
from qa_headpose.inference.detect import FaceResult
from qa_headpose.predict.config import PredictSummary

COLUMNS = ("file", "frame", "face", "x0", "y0", "x1", "y1", "score", "yaw", "pitch", "roll", "saturated")


def make_row(name: str, frame: int, result: FaceResult) -> dict[str, Any]:
    """One face as a row of `COLUMNS` (box in pixels, score, angles in degrees, `HeadPose.saturated`)."""
    x0, y0, x1, y1 = result.box
    return {
        "file": name,
        "frame": int(frame),
        "face": int(result.face),
        "x0": round(float(x0), 2),
        "y0": round(float(y0), 2),
        "x1": round(float(x1), 2),
        "y1": round(float(y1), 2),
        "score": round(float(result.score), 4),
        "yaw": round(float(result.pose.yaw), 3),
        "pitch": round(float(result.pose.pitch), 3),
        "roll": round(float(result.pose.roll), 3),
        "saturated": bool(getattr(result.pose, "saturated", False)),
    }


def format_header() -> str:
    """The terminal table's header line."""
    return f"{'file':<28} {'frame':>5} {'face':>4} {'x0':>7} {'y0':>7} {'x1':>7} {'y1':>7} {'score':>5} " + (
        f"{'yaw':>7} {'pitch':>7} {'roll':>7} {'saturated':>9}"
    )


def format_row(row: dict[str, Any]) -> str:
    """One row of the terminal table: box in pixels (1 decimal), angles in degrees (1 decimal), saturated yes/no."""
    name = row["file"] if len(row["file"]) <= 28 else "..." + row["file"][-25:]
    saturated = "yes" if row.get("saturated") else "no"
    return (
        f"{name:<28} {row['frame']:>5} {row['face']:>4} {row['x0']:>7.1f} {row['y0']:>7.1f} {row['x1']:>7.1f} "
        f"{row['y1']:>7.1f} {row['score']:>5.2f} {row['yaw']:>7.1f} {row['pitch']:>7.1f} {row['roll']:>7.1f} "
        f"{saturated:>9}"
    )


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text with a `COLUMNS` header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary_to_json(summary: PredictSummary, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready dict: ``faces`` (the rows), ``inputs`` (one report each) and ``meta``."""
    inputs = []
    for s in summary.sources:
        item = {"file": s.name, "kind": s.kind, "faces": s.faces, "frames": s.frames, "error": s.error}
        if s.kind in ("video", "camera"):
            item["fps"] = round(s.fps, 2)
        item["output"] = str(s.output) if s.output else None
        inputs.append(item)
    return {"meta": meta or {}, "faces": summary.rows, "inputs": inputs}


def write_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Writes `rows_to_csv` atomically."""
    write_bytes(path, rows_to_csv(rows).encode())
