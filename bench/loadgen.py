"""Load generator command line: a separate process driving the retrieval server through `bench.load.LoadRunner`.

Closed loop: `--concurrency` callers, each sending its next request when the previous one answered. Open loop:
requests are sent on a fixed schedule (`--rate` per second) whatever the server does, and latency is measured
from each request's INTENDED send time, so a stalled server (or client) shows up in the latency instead of
silently lowering the offered load (coordinated omission).

Requests cycle through pre-serialised messages for the users in `--requests-file` (JSON list of
{"user_id", "features"}); responses stay bytes. Only calls that start inside the measurement window (after
`--warmup-s`) count. `--batch-size N` sends RetrieveCandidatesBatch calls of N requests each (the batch RPC)
instead of single RetrieveCandidates calls; `queries_per_s` counts the user queries answered. `--channels N`
spreads the calls over N connections (a server with several worker processes behind one port gets one per
connection). With `--server-pid`, the CPU time of that process and of all its descendants (worker processes) is
sampled at the start and the end of the window; with `--stats-signal` it also gets SIGUSR1 there (see
bench/serve_process.py). Writes a JSON result to `--out` (or stdout).

    python -m bench.loadgen --target 127.0.0.1:50051 --requests-file users.json --mode closed --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.load import BATCH_METHOD, METHOD, LoadRunner, between
from service.client import build_request
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

PERCENTILES = (50, 90, 99, 99.9)
MAX_OUTSTANDING = 20_000


def serialised_requests(args: argparse.Namespace) -> tuple[pb.RetrieveCandidatesRequest, list[bytes]]:
    """A sample single request, and the messages to send (single requests or batches of `--batch-size`)."""
    rows = json.loads(Path(args.requests_file).read_text())
    random.Random(args.seed).shuffle(rows)
    singles = [build_request(r["user_id"], args.k, features=r.get("features") or None) for r in rows]
    if not args.batch_size:
        return singles[0], [r.SerializeToString() for r in singles]
    chunks = [
        [singles[(start + j) % len(singles)] for j in range(args.batch_size)]
        for start in range(0, len(singles), args.batch_size)
    ]
    return singles[0], [pb.RetrieveCandidatesBatchRequest(requests=c).SerializeToString() for c in chunks]


def check_target(target: str, request: pb.RetrieveCandidatesRequest, timeout_s: float) -> None:
    """One real call first: a server that answers no candidates would make every number meaningless."""
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        answer = pb_grpc.RetrievalServiceStub(channel).RetrieveCandidates(request, timeout=timeout_s)
    if not answer.candidates:
        raise RuntimeError(f"unexpected response: no candidates for k={request.num_candidates}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    sample, requests = serialised_requests(args)
    check_target(args.target, sample, args.timeout_s)
    runner = LoadRunner(
        args.target,
        requests,  # type: ignore[arg-type]  # raw: serialised bytes
        concurrency=args.concurrency,
        rate_per_s=args.rate if args.mode == "open" else None,
        timeout_s=args.timeout_s,
        max_outstanding=MAX_OUTSTANDING,
        channels=args.channels,
        method=BATCH_METHOD if args.batch_size else METHOD,
        raw=True,
        from_intended=True,
    ).start()
    start = time.monotonic() + args.warmup_s
    end = start + args.duration_s
    cpu = {"server": [], "loadgen": []}
    for mark in (start, end):
        time.sleep(max(0.0, mark - time.monotonic()))
        if args.server_pid:
            if args.stats_signal:
                os.kill(args.server_pid, signal.SIGUSR1)
            cpu["server"].append(tree_cpu_seconds(args.server_pid))
        cpu["loadgen"].append(time.process_time())
    stats = between(runner.stop().calls, start, end)
    ok = np.asarray([c.latency for c in stats.ok]) * 1000
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
        "errors": {code: n for code, n in stats.codes.items() if code != "OK"},
        **{f"p{p:g}_ms": float(np.percentile(ok, p)) if ok.size else float("nan") for p in PERCENTILES},
        "mean_ms": float(ok.mean()) if ok.size else float("nan"),
        "skipped_backlog": runner.skipped,
    }
    calls = max(1, len(stats.calls))
    for who in ("server", "loadgen") if args.server_pid else ("loadgen",):
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


def run_process(target: str, requests_file: Path, **flags: Any) -> dict[str, Any]:
    """Runs this load generator in a process of its own (so that it shares no interpreter with the caller) for one
    phase; `flags` are its command-line flags by name (`server_pid=123` → `--server-pid 123`, True → a bare
    flag). Returns its JSON result."""
    from bench.report import BENCH_ENV  # local: this module stays importable without the report's deps

    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "bench.loadgen", "--target", target, "--requests-file", str(requests_file)]
    for key, value in flags.items():
        flag = f"--{key.replace('_', '-')}"
        command += [flag] if value is True else [flag, str(value)]
    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(root)}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


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
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
