"""The machine a benchmark ran on: CPU, cores, clock, SIMD flags, OS and library versions. No TF."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

LIBRARIES = (
    "numpy",
    "ai-edge-litert",
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "onnxruntime",
    "onnx",
    "tf2onnx",
    "opencv-python-headless",
)


def system_info() -> dict[str, Any]:
    """CPU model, core counts, clock, SIMD flags, OS, Python and library versions, load average."""
    from qa_headpose.inference.runtime import default_max_concurrency

    cpu_model, mhz, flags = platform.processor() or "unknown", None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and cpu_model in ("unknown", "", platform.processor()):
                cpu_model = value
            elif key == "cpu MHz" and mhz is None:
                mhz = float(value)
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_available": default_max_concurrency(),
        "cpu_mhz": mhz,
        "cpu_flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"}),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
