"""`retrieval-serve` as a user starts it, in a subprocess: the one server wrapper of the benchmarks and the tests.

`ServeCommand` runs the console script (free gRPC and metrics ports on 127.0.0.1, stdout and stderr into a log
file), waits for its "listening" line and, unless told otherwise, for health SERVING; it reads the process's
resident memory from /proc and stops it with SIGTERM (SIGKILL after 30 s).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) .*metrics=http://[^:]+:(\d+)/metrics")


def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.05) -> Any:
    """Polls until `condition()` is truthy and returns it; fails after `timeout_s`."""
    end = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < end, f"condition not met within {timeout_s} s"
        time.sleep(interval_s)
    return value


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def serve_executable() -> list[str]:
    """The `retrieval-serve` console script of this interpreter's environment, else `python -m service.cli`."""
    script = Path(sys.executable).parent / "retrieval-serve"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


class ServeCommand:
    """`retrieval-serve --models-dir DIR --model-name NAME --host 127.0.0.1 --port 0 --metrics-port 0 ARGS`.

    Args:
        models_dir: root of the bundles.
        model_name: the model to serve.
        log_path: where stdout and stderr go.
        args: further command-line flags, as a user would add them.
        wait_serving: block in `start()` until health reports SERVING.
        env: extra environment variables of the process.
    """

    def __init__(
        self,
        models_dir: Path,
        model_name: str,
        log_path: Path,
        *args: str,
        wait_serving: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = [
            *serve_executable(), "--models-dir", str(models_dir), "--model-name", model_name,
            "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", *args,
        ]  # fmt: skip
        self.log_path = log_path
        self._wait_serving = wait_serving
        self._env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout_s: float = 90.0) -> ServeCommand:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **self._env}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        match = wait_for(lambda: self._exited_or(_LISTENING.search(self.log())), timeout_s, 0.1)
        self.port, self.metrics_port = int(match.group(1)), int(match.group(2))
        if self._wait_serving:
            wait_for(lambda: self._exited_or(self.health() == "SERVING"), timeout_s, 0.1)
        return self

    def _exited_or(self, value: Any) -> Any:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"retrieval-serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return value

    def health(self, timeout_s: float = 2.0) -> str:
        with grpc.insecure_channel(self.target) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
                )
            except grpc.RpcError as error:
                return str(error.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> ServeCommand:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
