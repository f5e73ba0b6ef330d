"""The benchmark's server process: `build_server` as `retrieval-serve` runs it, plus a batch-size recorder.

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

from service.batcher import BatcherConfig
from service.observer import NullObserver
from service.server import ServerConfig, build_server


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


async def _serve(args: argparse.Namespace) -> None:
    recorder = BatchRecorder()
    config = ServerConfig(
        models_dir=args.models_dir,
        model_name=args.model_name,
        host="127.0.0.1",
        port=0,
        batcher=BatcherConfig(args.max_batch_size, args.max_delay_us, args.queue_size, args.max_concurrent_batches),
        reload_interval_s=3600.0,
        grace_period_s=1.0,
        gpu_device=args.gpu_device,
    )
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--stats-file", type=Path, required=True)
    parser.add_argument("--max-batch-size", type=int, default=BatcherConfig().max_batch_size)
    parser.add_argument("--max-delay-us", type=int, default=BatcherConfig().max_delay_us)
    parser.add_argument("--queue-size", type=int, default=BatcherConfig().queue_size)
    parser.add_argument("--max-concurrent-batches", type=int, default=BatcherConfig().max_concurrent_batches)
    parser.add_argument("--gpu-device", type=int, default=0)
    parser.add_argument("--ready-timeout-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
