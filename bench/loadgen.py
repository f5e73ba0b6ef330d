"""Load generator: a separate process driving the retrieval server with a grpc.aio client.

Closed loop: `--concurrency` workers, each sending its next request when the previous one answered.
Open loop: requests are sent on a fixed schedule (`--rate` per second) whatever the server does, and latency
is measured from each request's INTENDED send time, so a stalled server (or client) shows up in the latency
instead of silently lowering the offered load (coordinated omission).

Requests cycle through pre-built messages for the users in `--requests-file` (JSON list of
{"user_id", "features"}). Only calls that start inside the measurement window (after `--warmup-s`) count.
`--batch-size N` sends RetrieveCandidatesBatch calls of N requests each (the batch RPC) instead of single
RetrieveCandidates calls; `queries_per_s` counts the user queries answered. `--channels N` spreads the calls
over N connections (a server with several worker processes behind one port gets one per connection).
With `--server-pid`, the CPU time of that process and of all its descendants (worker processes) is sampled at
the start and the end of the window; with `--stats-signal` it also gets SIGUSR1 there (see
bench/serve_process.py). Writes a JSON result to `--out` (or stdout).

    python bench/loadgen.py --target 127.0.0.1:50051 --requests-file users.json --mode closed --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from service.client import build_request
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

PERCENTILES = (50, 90, 99, 99.9)
MAX_OUTSTANDING = 20_000
SERVICE = "/" + pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
METHOD, BATCH_METHOD = f"{SERVICE}/RetrieveCandidates", f"{SERVICE}/RetrieveCandidatesBatch"


class Window:
    """Collects latencies and status codes of the calls that started inside the measurement window."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.latencies: list[float] = []
        self.codes: Counter[str] = Counter()

    def record(self, started: float, latency: float, code: str) -> None:
        if self.start <= started < self.end:
            self.codes[code] += 1
            if code == "OK":
                self.latencies.append(latency)


async def _call(stub: Any, request: bytes, timeout_s: float) -> str:
    try:
        await stub(request, timeout=timeout_s)
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return "OK"


async def closed_loop(
    stubs: list[Any], requests: list[Any], concurrency: int, window: Window, timeout_s: float
) -> None:
    async def worker(offset: int) -> None:
        i, stub = offset, stubs[offset % len(stubs)]
        while (now := time.perf_counter()) < window.end:
            code = await _call(stub, requests[i % len(requests)], timeout_s)
            window.record(now, time.perf_counter() - now, code)
            i += concurrency

    await asyncio.gather(*(worker(w) for w in range(concurrency)))


async def open_loop(
    stubs: list[Any], requests: list[Any], rate: float, window: Window, timeout_s: float
) -> dict[str, float]:
    """Sends request n at t0 + n / rate; returns how late the client itself was in sending."""
    t0 = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    lateness: list[float] = []
    skipped = 0

    async def one(intended: float, request: Any, stub: Any) -> None:
        code = await _call(stub, request, timeout_s)
        window.record(intended, time.perf_counter() - intended, code)

    n = 0
    while (intended := t0 + n / rate) < window.end:
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append(time.perf_counter() - intended)
        if len(pending) >= MAX_OUTSTANDING:
            skipped += 1
            window.record(intended, float("nan"), "CLIENT_BACKLOG")
        else:
            stub = stubs[n % len(stubs)]
            task = asyncio.get_running_loop().create_task(one(intended, requests[n % len(requests)], stub))
            pending.add(task)
            task.add_done_callback(pending.discard)
        n += 1
    if pending:
        await asyncio.gather(*pending)
    late = np.asarray(lateness) * 1000
    return {
        "send_lateness_p50_ms": float(np.percentile(late, 50)) if late.size else 0.0,
        "send_lateness_p99_ms": float(np.percentile(late, 99)) if late.size else 0.0,
        "skipped_backlog": float(skipped),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = json.loads(Path(args.requests_file).read_text())
    random.Random(args.seed).shuffle(rows)
    singles = [build_request(r["user_id"], args.k, features=r.get("features") or None) for r in rows]
    # Pre-serialised requests, responses left as bytes: the client spends its (shared) CPU on the calls only.
    if args.batch_size:
        chunks = [
            [singles[(start + j) % len(singles)] for j in range(args.batch_size)]
            for start in range(0, len(singles), args.batch_size)
        ]
        requests = [pb.RetrieveCandidatesBatchRequest(requests=c).SerializeToString() for c in chunks]
    else:
        requests = [r.SerializeToString() for r in singles]
    # A local subchannel pool per channel: each channel is a connection of its own.
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(args.target, options=options) for _ in range(args.channels)]
    try:
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))
        check = await pb_grpc.RetrievalServiceStub(channels[0]).RetrieveCandidates(singles[0], timeout=args.timeout_s)
        if not check.candidates:
            raise RuntimeError(f"unexpected response: {len(check.candidates)} candidates for k={args.k}")
        method = BATCH_METHOD if args.batch_size else METHOD
        stubs = [c.unary_unary(method) for c in channels]  # no (de)serialisers: bytes in, bytes out
        now = time.perf_counter()
        window = Window(now + args.warmup_s, now + args.warmup_s + args.duration_s)
        cpu: dict[str, list[float]] = {"server": [], "loadgen": []}
        marks = _window_marks(args.server_pid, args.stats_signal, window, cpu) if args.server_pid else []
        extra: dict[str, float] = {}
        if args.mode == "closed":
            await closed_loop(stubs, requests, args.concurrency, window, args.timeout_s)
        else:
            extra = await open_loop(stubs, requests, args.rate, window, args.timeout_s)
        await asyncio.gather(*marks)
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    ok = np.asarray(window.latencies) * 1000
    result: dict[str, Any] = {
        "mode": args.mode,
        "concurrency": args.concurrency if args.mode == "closed" else None,
        "offered_rate": args.rate if args.mode == "open" else None,
        "channels": args.channels,
        "batch_size": args.batch_size or None,
        "duration_s": args.duration_s,
        "k": args.k,
        "completed_ok": int(ok.size),
        "qps": ok.size / args.duration_s,
        "queries_per_s": ok.size * max(1, args.batch_size) / args.duration_s,
        "errors": {code: n for code, n in window.codes.items() if code != "OK"},
        **{f"p{p:g}_ms": float(np.percentile(ok, p)) if ok.size else float("nan") for p in PERCENTILES},
        "mean_ms": float(ok.mean()) if ok.size else float("nan"),
        **extra,
    }
    if args.server_pid and len(cpu["server"]) == 2:
        calls = max(1, sum(window.codes.values()))
        for who in ("server", "loadgen"):
            seconds = cpu[who][1] - cpu[who][0]
            result[f"{who}_cpu_cores"] = seconds / args.duration_s
            result[f"{who}_cpu_ms_per_call"] = seconds * 1000 / calls
    return result


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of process `pid` and of every live descendant (e.g. a server's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += process_cpu_seconds(current)
        except OSError:
            continue
        todo.extend(children.get(current, ()))
    return total


def _window_marks(
    pid: int, stats_signal: bool, window: Window, cpu: dict[str, list[float]]
) -> list[asyncio.Task[None]]:
    """Samples the server's and this process's CPU time at the window's start and end (and signals the server)."""

    async def mark_at(when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.perf_counter()))
        if stats_signal:
            os.kill(pid, signal.SIGUSR1)
        cpu["server"].append(tree_cpu_seconds(pid))
        cpu["loadgen"].append(time.process_time())

    loop = asyncio.get_running_loop()
    return [loop.create_task(mark_at(window.start)), loop.create_task(mark_at(window.end))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--requests-file", required=True, help="JSON list of {user_id, features}")
    parser.add_argument("--mode", choices=("closed", "open"), required=True)
    parser.add_argument("--concurrency", type=int, default=1, help="closed loop: outstanding requests")
    parser.add_argument("--rate", type=float, default=100.0, help="open loop: requests per second")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--server-pid", type=int, default=0, help="sample this process tree's CPU time")
    parser.add_argument("--stats-signal", action="store_true", help="SIGUSR1 the server at window start and end")
    parser.add_argument("--channels", type=int, default=1, help="connections to spread the calls over")
    parser.add_argument("--batch-size", type=int, default=0, help="requests per RetrieveCandidatesBatch call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.rate <= 0 or args.duration_s <= 0 or args.channels < 1 or args.batch_size < 0:
        parser.error("--concurrency and --channels must be >= 1, --rate and --duration-s > 0, --batch-size >= 0")
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
