"""The in-process ceiling: the bundle's engine driven without gRPC at the batch sizes the server formed.

`Engine.retrieve` (query tower + one FAISS search + per-query postprocessing) is timed at each batch size; the
ceiling for a batch-size distribution {b: count} is sum(count·b) / sum(count·t(b)), the throughput a server
that forms exactly those batches could at best reach if gRPC, validation and queueing cost nothing.

Each size is timed in two arrangements and the faster one counts (the ceiling is the best the machine does):
one stream of batches with FAISS on every core, and `streams` concurrent streams (threads) with FAISS on its
share of the cores each, as the server runs `max_concurrent_batches` batches at once. t(b) is then the time
per batch of the arrangement (a call's median time divided by the number of streams).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import run_streams
from service.client import build_request
from service.cpu import share_cpu_threads
from service.engine import Engine
from service.model_manager import load_engine
from service.query import Query
from service.validation import ServiceLimits, validate_request

MAX_MEASURED_SIZES = 12


def load(bundle_dir: Path, gpu_device: int = 0) -> Engine:
    return load_engine(bundle_dir, gpu_device=gpu_device, warmup_batch_sizes=(1, 64))


def queries_for(engine: Engine, rows: Sequence[Mapping[str, Any]], k: int) -> list[Query]:
    """Validated queries, exactly as the servicer builds them from requests."""
    limits = ServiceLimits()
    return [
        validate_request(build_request(r["user_id"], k, features=r.get("features") or None), engine.spec, limits)
        for r in rows
    ]


def time_batch(engine: Engine, queries: Sequence[Query], size: int, min_seconds: float, min_repeats: int = 5) -> float:
    """Median seconds of one `retrieve` of `size` queries (different queries each repeat, after 2 untimed)."""
    times: list[float] = []
    offset, spent = 0, 0.0
    for _ in range(2):
        engine.respond([queries[(offset + i) % len(queries)] for i in range(size)])
        offset += size
    while len(times) < min_repeats or spent < min_seconds:
        batch = [queries[(offset + i) % len(queries)] for i in range(size)]
        offset += size
        start = time.perf_counter()
        engine.respond(batch)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    return float(np.median(times))


def time_batch_streams(engine: Engine, queries: Sequence[Query], size: int, min_seconds: float, streams: int) -> float:
    """Seconds per batch of `size` with `streams` threads retrieving at once, FAISS on cores/streams threads each.

    The threads start together (a barrier) and run until the same moment; the result is the window's length
    divided by the batches all of them finished in it.
    """
    if streams == 1:
        return time_batch(engine, queries, size, min_seconds)
    window = max(min_seconds, 0.2)
    counts = [0] * streams
    ends = [0.0] * streams

    def stream(index: int, start: threading.Barrier) -> None:
        share_cpu_threads(streams)
        batch = [queries[(index * size + i) % len(queries)] for i in range(size)]
        engine.respond(batch)  # untimed
        start.wait()
        stop_at = time.perf_counter() + window
        while True:
            engine.respond(batch)
            counts[index] += 1
            ends[index] = time.perf_counter()
            if ends[index] >= stop_at:
                break

    began = run_streams(stream, streams)
    return (max(ends) - began) / sum(counts)


def measured_sizes(distribution: Mapping[int, int]) -> list[int]:
    """At most MAX_MEASURED_SIZES sizes: quantiles of the request-weighted distribution, plus min and max."""
    sizes = np.array(sorted(distribution), dtype=np.int64)
    weights = np.array([distribution[s] * s for s in sizes], dtype=np.float64)
    if len(sizes) <= MAX_MEASURED_SIZES:
        return sizes.tolist()
    cdf = np.cumsum(weights) / weights.sum()
    picks = {int(sizes[0]), int(sizes[-1])}
    for q in np.linspace(0, 1, MAX_MEASURED_SIZES - 2 + 2)[1:-1]:
        picks.add(int(sizes[min(np.searchsorted(cdf, q), len(sizes) - 1)]))
    return sorted(picks)


def ceiling(
    engine: Engine,
    queries: Sequence[Query],
    distribution: Mapping[int, int],
    min_seconds: float = 1.0,
    streams: int = 1,
) -> dict[str, Any]:
    """Ceiling QPS for a batch-size distribution, with the per-size timings it rests on.

    Each measured size takes the faster of one stream (all cores) and `streams` concurrent streams.
    """
    if not distribution:
        return {"qps": float("nan"), "seconds_by_batch_size": {}}
    sizes = measured_sizes(distribution)
    arrangements = sorted({1, streams})
    per_arrangement = {
        n: {s: time_batch_streams(engine, queries, s, min_seconds / len(sizes) / len(arrangements), n) for s in sizes}
        for n in arrangements
    }
    seconds = {s: min(per_arrangement[n][s] for n in arrangements) for s in sizes}
    xs = np.array(sizes, dtype=np.float64)
    ys = np.array([seconds[s] for s in sizes])
    requests = sum(b * n for b, n in distribution.items())
    total = sum(n * float(np.interp(b, xs, ys)) for b, n in distribution.items())
    return {
        "qps": requests / total,
        "seconds_by_batch_size": {str(s): seconds[s] for s in sizes},
        "seconds_by_streams": {str(n): {str(s): t for s, t in v.items()} for n, v in per_arrangement.items()},
        "mean_batch_size": requests / sum(distribution.values()),
    }
