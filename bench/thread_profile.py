"""Where `retrieval-serve`'s CPU goes, per thread, under the front-door load: the profile behind the targets.

Starts `retrieval-serve` on the demo bundle as bench/frontdoor.py does, drives it with the same load generator
at each concurrency, and samples every thread's CPU time from /proc/<pid>/task over the measurement window.
Threads are grouped by role: the event loop (the main thread: gRPC handlers, validation, batching), TensorFlow's
pools, gRPC core's event-engine threads, and the Python threads that share the process name: the compute threads
(query tower, FAISS, response encoding), gRPC's poller and OpenMP's workers. Writes thread_profile.{json,md}
into `--out-dir`.

    python -m bench.thread_profile [--work-dir runs/bench-frontdoor-full]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.frontdoor import DEMO_MODEL, K
from bench.processes import ServeCommand
from bench.report import OUT, command_line, header_markdown, machine, markdown_table, write_json


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every thread of `pid`: tid -> (name, seconds)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return out


def role(pid: int, tid: int, name: str) -> str:
    """The thread's role, from its OS name (Python 3.11 names none of its threads: they share the process name)."""
    if tid == pid:
        return "event loop (main thread)"
    if name.startswith("tf_"):
        return "TensorFlow pools"
    if name.startswith(("event_engine", "grpc")):
        return "gRPC core threads"
    return "compute threads, gRPC poller, OpenMP"


def profile(server: ServeCommand, requests_file: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """Per-role CPU milliseconds per call during one closed-loop window of `seconds`."""
    result: dict[str, Any] = {}

    def drive() -> None:
        result.update(
            loadgen.run_process(
                server.target,
                requests_file,
                mode="closed",
                concurrency=concurrency,
                duration_s=seconds + 2,
                warmup_s=1.0,
                k=K,
                channels=4,
            )
        )

    driver = threading.Thread(target=drive)
    driver.start()
    time.sleep(1.5)
    before = thread_cpu(server.pid)
    time.sleep(seconds)
    after = thread_cpu(server.pid)
    driver.join()
    calls = result["qps"] * seconds
    by_role: Counter[str] = Counter()
    for tid, (name, cpu) in after.items():
        by_role[role(server.pid, tid, name)] += cpu - before.get(tid, (name, 0.0))[1]
    return {
        "concurrency": concurrency,
        "qps": result["qps"],
        "cpu_ms_per_call": {r: 1000 * s / calls for r, s in by_role.most_common()},
        "cores": {r: s / seconds for r, s in by_role.most_common()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-frontdoor-full"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    requests_file = args.work_dir / "demo-requests.json"
    if not requests_file.exists():
        raise SystemExit(f"{requests_file} missing: run python -m bench.frontdoor first (it trains the demo bundle)")
    with ServeCommand(args.work_dir / "models", DEMO_MODEL, args.work_dir / "thread-profile.log") as server:
        rows = [profile(server, requests_file, c, args.seconds) for c in (1, 64)]
    report = {"command": command_line(), "machine": machine(), "profiles": rows}
    write_json(args.out_dir / "thread_profile.json", report)
    lines = [header_markdown("retrieval-serve CPU per thread role", report["machine"], report["command"])]
    for row in rows:
        lines.append(f"## Concurrency {row['concurrency']}: {row['qps']:.0f} calls/s\n")
        table = [[r, f"{ms:.3f}", f"{row['cores'][r]:.2f}"] for r, ms in row["cpu_ms_per_call"].items()]
        lines.append(markdown_table(["threads", "CPU ms per call", "cores"], table) + "\n")
    (args.out_dir / "thread_profile.md").write_text("\n".join(lines))
    print(json.dumps(rows, indent=2))
    return report


if __name__ == "__main__":
    main()
