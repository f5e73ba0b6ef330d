"""The benchmark's server process: `build_server` as `retrieval-serve` runs it, plus a batch-size recorder.

Every server flag is `retrieval-serve`'s own (service/cli's parser and config builder); this script adds only
`--stats-file` and `--ready-timeout-s`, and serves on 127.0.0.1 with a free port.

Prints `PORT <n>` once the model serves. On SIGUSR1 it writes the batch sizes and stage times recorded since
the previous SIGUSR1 to `--stats-file` (atomically, numbered by a `dump` counter) and starts recording afresh;
the load generator signals at the start and the end of its measurement window, so each window's batch sizes
are known. Stops on SIGTERM.

    python bench/serve_process.py --models-dir DIR --model-name NAME --stats-file FILE [--max-batch-size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

from service import cli
from service.observer import NullObserver
from service.server import build_server, freeze_startup_objects


class BatchRecorder(NullObserver):
    """Counts batch sizes, drops, rejections and stage seconds; `take()` returns and resets them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.batches: Counter[int] = Counter()
        self.events: Counter[str] = Counter()
        self.stages: defaultdict[str, float] = defaultdict(float)

    def on_batch(self, size: int) -> None:
        with self._lock:
            self.batches[size] += 1

    def on_rejected(self) -> None:
        with self._lock:
            self.events["rejected"] += 1

    def on_dropped(self, reason: str) -> None:
        with self._lock:
            self.events[f"dropped:{reason}"] += 1

    def on_stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stages[stage] += seconds

    def take(self) -> dict[str, object]:
        with self._lock:
            data = {
                "batch_sizes": {str(k): v for k, v in sorted(self.batches.items())},
                "events": dict(self.events),
                "stage_seconds": dict(self.stages),
            }
            self._reset()
        return data


async def _serve(args: argparse.Namespace, server_args: list[str]) -> None:
    recorder = BatchRecorder()
    serve_flags = cli.parse_args(
        ["--host", "127.0.0.1", "--port", "0", "--reload-interval-s", "3600", "--grace-period-s", "1", *server_args]
    )
    config = cli.config_from_args(serve_flags)
    freeze_startup_objects()  # as retrieval-serve does
    _, port, handles = await build_server(config, observer=recorder)
    engine = await handles.wait_ready(args.ready_timeout_s)
    recorder.take()  # forget the warm-up batches
    print(f"PORT {port} index_device={engine.index_device} query_device={engine.query_device}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    dumps = 0

    def dump() -> None:
        nonlocal dumps
        dumps += 1
        tmp = args.stats_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"dump": dumps, **recorder.take()}))
        os.replace(tmp, args.stats_file)

    loop.add_signal_handler(signal.SIGUSR1, dump)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await handles.shutdown(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog="Other flags: those of retrieval-serve.")
    parser.add_argument("--stats-file", type=Path, required=True)
    parser.add_argument("--ready-timeout-s", type=float, default=600.0)
    args, server_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for key, value in cli.SERVING_ENV.items():
        os.environ.setdefault(key, value)
    asyncio.run(_serve(args, server_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
