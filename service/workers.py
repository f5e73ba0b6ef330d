"""`retrieval-serve --workers N`: N server processes on one port, supervised by a parent that serves no calls.

Python's gRPC server answers calls on one core (one event loop), so a machine with more cores runs several
worker processes. Each binds the same host:port with SO_REUSEPORT (the kernel spreads connections over them)
and is a whole server of its own: model manager with hot reload (a bad bundle is refused in each), batcher,
engine, health. The supervisor, which imports no TensorFlow:
- starts the workers (multiprocessing "spawn": fresh interpreters, no forked TensorFlow or CUDA state), each
  with its GPU share: with n GPUs, worker i sees only GPU i mod n (CUDA_VISIBLE_DEVICES) and TensorFlow grows
  its GPU memory instead of taking it all (FAISS needs its share);
- restarts a worker that died (kill -9, a crash): only the calls in flight on that worker fail, with
  UNAVAILABLE, since the connections it held break and clients reconnect to the live workers;
- serves one /metrics for all workers through prometheus-client's multiprocess mode (each worker writes its
  values to files in the run directory; a dead worker's live gauges are dropped with `mark_process_dead`);
- on SIGTERM or SIGINT asks every worker to drain (each does the single server's graceful shutdown) and waits.
Health reports SERVING only while every worker is warm (service/readiness.py).

The supervision loop is written here because no library runs grpc.aio worker processes; the port sharing is
the kernel's (SO_REUSEPORT) and the metrics aggregation is prometheus-client's.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path

from service.config import ServerConfig
from service.cpu import WORKER_CPUS_ENV, tensorflow_thread_env, worker_cpus
from service.logs import LogFormat, configure_logging

logger = logging.getLogger(__name__)

# A worker that dies sooner than this after its start counts as crash-looping: its restarts back off.
STABLE_AFTER_S = 30.0
MAX_BACKOFF_S = 30.0


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    started: float
    failures: int = 0  # consecutive early deaths


def gpu_count() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else the NVIDIA driver's list (no CUDA init)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    driver = Path("/proc/driver/nvidia/gpus")
    return len(list(driver.iterdir())) if driver.is_dir() else 0


def worker_environment(index: int, gpus: int, workers: int = 1) -> dict[str, str]:
    """Environment of worker `index` of `workers`: its share of the cores, its GPU (index mod `gpus`) and
    TensorFlow's growing GPU memory."""
    env = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", WORKER_CPUS_ENV: str(worker_cpus(workers))}
    if gpus > 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = devices[index % gpus]
    return env


class Supervisor:
    """Runs `workers` copies of the server described by `config` on one port until SIGTERM or SIGINT.

    Args:
        config: the server configuration; its port is shared (0 picks a free one for all workers).
        workers: number of worker processes (>= 1).
        log_level: logging level name for the workers.
        log_format: "text" or "json" log lines (service.logs).
    """

    def __init__(
        self, config: ServerConfig, workers: int, *, log_level: str = "INFO", log_format: LogFormat = "text"
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._config = config
        self._count = workers
        self._log_level = log_level
        self._log_format = log_format
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._stopping = threading.Event()
        self._run_dir = Path(tempfile.mkdtemp(prefix="retrieval-serve-"))
        self._metrics_dir = self._run_dir / "metrics"
        self._gpus = gpu_count()

    def run(self, on_listening: Callable[[int, int | None], None] | None = None) -> int:
        """Starts the workers and supervises them until a signal; returns the exit code (0 after a clean drain).

        Args:
            on_listening: called with the bound port and the metrics port (None without metrics) once the
                workers are started.
        """
        reservation, port = _reserve_port(self._config.host, self._config.port)
        config = replace(self._config, port=port, metrics_port=None)
        endpoint = None
        try:
            if self._config.metrics_port is not None:
                self._metrics_dir.mkdir()
                from service.metrics import MULTIPROC_ENV, MetricsEndpoint  # after the directory exists

                os.environ[MULTIPROC_ENV] = str(self._metrics_dir)  # inherited by the spawned workers
                endpoint = MetricsEndpoint.start_multiprocess(
                    str(self._metrics_dir), self._config.host, self._config.metrics_port
                )
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self._stopping.set())
            self._workers = [self._start(config, i) for i in range(self._count)]
            if on_listening is not None:
                on_listening(port, endpoint.port if endpoint is not None else None)
            while not self._stopping.wait(0.2):
                self._restart_dead(config)
            return self._drain()
        finally:
            if endpoint is not None:
                endpoint.stop()
            reservation.close()
            shutil.rmtree(self._run_dir, ignore_errors=True)

    def _start(self, config: ServerConfig, index: int, failures: int = 0) -> _Worker:
        env = worker_environment(index, self._gpus, self._count)
        process = self._context.Process(
            target=run_worker,
            args=(config, index, self._count, str(self._run_dir), env, self._log_level, os.getpid(), self._log_format),
            name=f"retrieval-worker-{index}",
        )
        process.start()
        logger.info("worker started index=%d pid=%s gpu=%s", index, process.pid, env.get("CUDA_VISIBLE_DEVICES"))
        return _Worker(index, process, time.monotonic(), failures)

    def _restart_dead(self, config: ServerConfig) -> None:
        for position, worker in enumerate(self._workers):
            if worker.process.is_alive() or self._stopping.is_set():
                continue
            self._forget(worker)
            early = time.monotonic() - worker.started < STABLE_AFTER_S
            failures = worker.failures + 1 if early else 0
            delay = min(MAX_BACKOFF_S, 0.5 * 2**failures) if early else 0.0
            logger.error(
                "worker died index=%d pid=%s exitcode=%s; restarting in %.1f s",
                worker.index, worker.process.pid, worker.process.exitcode, delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            self._workers[position] = self._start(config, worker.index, failures)

    def _forget(self, worker: _Worker) -> None:
        """A dead worker is not warm, and its live gauges leave the aggregated metrics."""
        from service.readiness import marker_path

        marker_path(self._run_dir, worker.index).unlink(missing_ok=True)
        if self._metrics_dir.is_dir() and worker.process.pid is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.process.pid, str(self._metrics_dir))

    def _drain(self) -> int:
        """Asks every worker to shut down gracefully and waits for them (killing any that outlive the grace)."""
        logger.info("supervisor stopping workers=%d", len(self._workers))
        for worker in self._workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._config.grace_period_s + 10.0
        code = 0
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                logger.error(
                    "worker did not stop in time index=%d pid=%s; killing it", worker.index, worker.process.pid
                )
                worker.process.kill()
                worker.process.join()
                code = 1
            elif worker.process.exitcode not in (0, None):
                code = 1
        logger.info("supervisor stopped")
        return code


def run_worker(
    config: ServerConfig,
    index: int,
    count: int,
    run_dir: str,
    env: dict[str, str],
    log_level: str,
    parent: int,
    log_format: LogFormat = "text",
) -> None:
    """A worker process's main (spawned by the supervisor): serves until SIGTERM/SIGINT or the parent's death."""
    os.environ.update(env)  # before TensorFlow and FAISS are imported, below
    for key, value in tensorflow_thread_env(config.batcher.max_concurrent_batches).items():
        os.environ.setdefault(key, value)
    configure_logging(log_level, log_format, prefix=f"worker-{index} ")
    import asyncio

    from model.console import import_tensorflow_quietly

    import_tensorflow_quietly()

    asyncio.run(_serve_worker(config, index, count, Path(run_dir), parent))


async def _serve_worker(config: ServerConfig, index: int, count: int, run_dir: Path, parent: int) -> None:
    import asyncio

    from service.metrics import RetrievalMetrics, multiprocess_dir
    from service.readiness import WorkerReadiness
    from service.server import build_server, freeze_startup_objects

    freeze_startup_objects()

    metrics = RetrievalMetrics(queue_capacity=config.batcher.queue_size) if multiprocess_dir() else None
    readiness = WorkerReadiness(run_dir, index, count)
    _, _, handles = await build_server(config, metrics=metrics, readiness=readiness)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set() and os.getppid() == parent:  # an orphaned worker stops too
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await handles.shutdown()


def _reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Binds (without listening) a SO_REUSEPORT socket on host:port, so that port 0 picks one port for every
    worker and the port stays ours while workers restart. A socket that does not listen receives no calls."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    reservation = socket.socket(family, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind((address, port))
    return reservation, int(reservation.getsockname()[1])
