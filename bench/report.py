"""Shared by the benchmark scripts: machine description, percentiles, and JSON / Markdown / PNG writers."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path("docs/benchmarks")
PERCENTILES = (50, 90, 99, 99.9)

# Set before FAISS / TensorFlow load OpenMP: active waiting stalls the BLAS path when another process holds a core.
BENCH_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "TF_CPP_MIN_LOG_LEVEL": "3"}


def command_line() -> str:
    """The command that started this process, as a user would type it."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = f"-m {spec.name}" if spec is not None and spec.name else Path(sys.argv[0]).as_posix()
    return "python " + " ".join([program, *sys.argv[1:]])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def machine() -> dict[str, Any]:
    """CPU count and model, GPUs seen by nvidia-smi, library versions, and thread-related environment."""
    import faiss  # local: the load generator imports this module without FAISS

    versions = {"python": platform.python_version(), "faiss": faiss.__version__}
    for name in ("tensorflow", "keras", "grpc", "numpy"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    gpus = _gpus()
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "gpus": gpus,
        "faiss_gpus": faiss.get_num_gpus(),
        "gpu_used": bool(gpus) and faiss.get_num_gpus() > 0,
        "load_average_at_start": list(os.getloadavg()),
        "versions": versions,
        "env": {k: os.environ.get(k, "") for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")},
    }


def device_label(info: dict[str, Any]) -> str:
    """One line: GPU name(s) when used, else the CPU model and core count."""
    if info["gpu_used"]:
        return "GPU: " + ", ".join(info["gpus"])
    return f"CPU: {info['cpu_model']} ({info['cpu_count']} cores)"


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9 and mean of latencies, in milliseconds (NaN when empty)."""
    values = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    if values.size == 0:
        return {**{f"p{p:g}_ms": float("nan") for p in PERCENTILES}, "mean_ms": float("nan")}
    result = {f"p{p:g}_ms": float(np.percentile(values, p)) for p in PERCENTILES}
    result["mean_ms"] = float(values.mean())
    return result


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable, allow_nan=True) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats get 4 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if value != value else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def header_markdown(title: str, info: dict[str, Any], command: str, note: str = "") -> str:
    """Title, exact command and machine description."""
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['cpu_count']} CPUs ({info['cpu_model']}), {info['platform']}; "
        f"GPU used: {'yes (' + ', '.join(info['gpus']) + ')' if info['gpu_used'] else 'no'}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}.",
        "",
    ]
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def run_streams(stream: Callable[[int, threading.Barrier], None], count: int) -> float:
    """Runs `stream(i, start)` in `count` threads that begin together at `start.wait()`; returns when they
    all finished, with the moment they were released (time.perf_counter)."""
    start = threading.Barrier(count + 1)
    threads = [threading.Thread(target=stream, args=(i, start)) for i in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return began
