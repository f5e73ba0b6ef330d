"""The one load generator of the benchmarks and the reliability tests: grpc.aio calls from a background thread.

`LoadRunner` runs closed loop (`concurrency` callers, each sending its next request when the previous one
answered) or open loop (`rate_per_s` arrivals whatever the server does, at most `max_outstanding` in flight).
Every call is recorded with its start time, latency, status code, the model version that answered and, when
a `check` is given, what was wrong with the answer. `raw=True` sends pre-serialised requests and keeps the
responses as bytes (the benchmarks' way: the client's CPU goes to the calls), and `from_intended=True` times
open-loop calls from their scheduled send time, so that a stalled server (or client) shows up in the latency
instead of silently lowering the offered load (coordinated omission). bench/loadgen.py is its command line.
`HealthProber` checks grpc.health.v1 on an interval.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

Check = Callable[[int, pb.RetrieveCandidatesResponse], str | None]
SERVICE = "/" + pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
METHOD, BATCH_METHOD = f"{SERVICE}/RetrieveCandidates", f"{SERVICE}/RetrieveCandidatesBatch"


@dataclass(frozen=True)
class Call:
    """One finished call: start (time.monotonic), latency in seconds, status name, serving version, problem."""

    start: float
    latency: float
    code: str
    version: str = ""
    problem: str | None = None

    @property
    def end(self) -> float:
        return self.start + self.latency


@dataclass
class LoadStats:
    """Summary of a list of calls."""

    calls: list[Call]
    seconds: float
    codes: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.codes = Counter(c.code for c in self.calls)

    @property
    def ok(self) -> list[Call]:
        return [c for c in self.calls if c.code == "OK"]

    @property
    def problems(self) -> list[str]:
        return [c.problem for c in self.calls if c.problem]

    @property
    def throughput(self) -> float:
        return len(self.ok) / max(self.seconds, 1e-9)

    def latency_ms(self, percentile: float) -> float:
        latencies = [c.latency for c in self.ok]
        return float(np.percentile(latencies, percentile) * 1000) if latencies else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.calls),
            "codes": dict(sorted(self.codes.items())),
            "seconds": round(self.seconds, 2),
            "ok_per_s": round(self.throughput, 1),
            "p50_ms": round(self.latency_ms(50), 2),
            "p99_ms": round(self.latency_ms(99), 2),
            "wrong_answers": len(self.problems),
        }


def between(calls: Sequence[Call], start: float, end: float) -> LoadStats:
    """The calls that started in [start, end)."""
    return LoadStats([c for c in calls if start <= c.start < end], end - start)


class LoadRunner:
    """Sends RetrieveCandidates calls from a background thread until `stop()`.

    Args:
        target: "host:port".
        requests: cycled through; call n sends requests[n % len(requests)].
        concurrency: closed-loop callers (ignored when `rate_per_s` is set).
        rate_per_s: open-loop arrival rate; None runs closed loop.
        timeout_s: deadline of every call.
        check: (request index, response) -> what is wrong, or None.
        max_outstanding: open loop: arrivals beyond this many calls in flight are counted as `skipped`.
        credentials: channel credentials (TLS); None: plaintext.
        metadata: sent with every call (e.g. a bearer token).
        channels: connections the calls are spread over, round robin (a server with several worker processes
            on one port gets one per connection).
        method: the full method name to call (RetrieveCandidates by default; e.g. RetrieveCandidatesBatch).
        raw: `requests` are serialised bytes and responses stay bytes (no version, no check).
        from_intended: open loop: a call's start and latency count from its scheduled send time.
        wait_for_ready: calls wait for a connection instead of failing at once while their channel reconnects
            (gRPC's wait-for-ready): a call then fails only if the server it reached failed it.
    """

    def __init__(
        self,
        target: str,
        requests: Sequence[pb.RetrieveCandidatesRequest],
        *,
        concurrency: int = 8,
        rate_per_s: float | None = None,
        timeout_s: float = 5.0,
        check: Check | None = None,
        max_outstanding: int = 2000,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
        channels: int = 1,
        method: str = METHOD,
        raw: bool = False,
        from_intended: bool = False,
        wait_for_ready: bool = False,
    ) -> None:
        self.target = target
        self._channels = channels
        self._method = method
        self._raw = raw
        self._from_intended = from_intended
        self._wait_for_ready = wait_for_ready
        self._requests = list(requests)
        self._concurrency = concurrency
        self._rate = rate_per_s
        self._timeout_s = timeout_s
        self._check = check
        self._max_outstanding = max_outstanding
        self._credentials = credentials
        self._metadata = metadata
        self.calls: list[Call] = []
        self.details: dict[str, list[str]] = {}  # a few distinct error details by status code
        self.skipped = 0
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._cancel = False
        self._cancelling = False
        self._thread = threading.Thread(target=self._main, name="load-runner", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> LoadRunner:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError(f"load runner could not connect to {self.target}")
        return self

    def stop(self, *, cancel: bool = False) -> LoadStats:
        """Stops sending; waits for calls in flight, or cancels them with `cancel`. Returns every call."""
        assert self._loop is not None and self._stopping is not None
        self._cancel = cancel
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(self._timeout_s + 30)
        if self._error is not None:
            raise self._error
        return LoadStats(list(self.calls), self.stopped_at - self.started_at)

    def run_for(self, seconds: float) -> LoadStats:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # surfaced by stop()
            self._error = error
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # Each channel a connection of its own; responses of any size.
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        if self._credentials is None:
            channels = [grpc.aio.insecure_channel(self.target, options=options) for _ in range(self._channels)]
        else:
            channels = [
                grpc.aio.secure_channel(self.target, self._credentials, options=options) for _ in range(self._channels)
            ]
        try:
            await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))
            methods = [self._callable(c) for c in channels]
            self.started_at = time.monotonic()
            self._ready.set()
            if self._rate is None:
                await asyncio.gather(*(self._closed(methods, w) for w in range(self._concurrency)))
            else:
                await self._open(methods)
            self.stopped_at = time.monotonic()
        finally:
            await asyncio.gather(*(c.close() for c in channels))

    def _callable(self, channel: grpc.aio.Channel) -> Any:
        if self._raw:  # no (de)serialisers: bytes in, bytes out
            return channel.unary_unary(self._method)
        if self._method == BATCH_METHOD:
            return pb_grpc.RetrievalServiceStub(channel).RetrieveCandidatesBatch
        return pb_grpc.RetrievalServiceStub(channel).RetrieveCandidates

    async def _closed(self, methods: list[Any], offset: int) -> None:
        assert self._stopping is not None
        n, method = offset, methods[offset % len(methods)]
        while not self._stopping.is_set():
            await self._one(method, n)
            n += self._concurrency

    async def _open(self, methods: list[Any]) -> None:
        assert self._stopping is not None and self._rate is not None
        pending: set[asyncio.Task[None]] = set()
        sent, start = 0, time.monotonic()
        while not self._stopping.is_set():
            due = int((time.monotonic() - start) * self._rate) + 1 - sent
            for _ in range(max(due, 0)):
                if len(pending) >= self._max_outstanding:
                    self.skipped += 1
                else:
                    intended = start + sent / self._rate if self._from_intended else None
                    task = asyncio.get_running_loop().create_task(
                        self._one(methods[sent % len(methods)], sent, intended)
                    )
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                sent += 1
            # Until the next arrival's send time (arrival n is due at start + n / rate), checking for stop often.
            await asyncio.sleep(min(max(0.0, start + sent / self._rate - time.monotonic()), 0.001))
        if self._cancel:
            self._cancelling = True
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, method: Any, n: int, intended: float | None = None) -> None:
        index = n % len(self._requests)
        start = time.monotonic() if intended is None else intended
        version, problem = "", None
        try:
            response = await method(
                self._requests[index], timeout=self._timeout_s, metadata=self._metadata,
                wait_for_ready=self._wait_for_ready or None,
            )  # fmt: skip
        except grpc.aio.AioRpcError as error:
            cancelled = self._cancelling and error.code() == grpc.StatusCode.CANCELLED
            code = "CLIENT_CANCELLED" if cancelled else error.code().name
            examples = self.details.setdefault(code, [])
            if len(examples) < 3 and error.details() not in examples:
                examples.append(error.details())
        except asyncio.CancelledError:
            self.calls.append(Call(start, time.monotonic() - start, "CLIENT_CANCELLED"))
            raise
        else:
            code = "OK"
            if not self._raw and hasattr(response, "model_version"):
                version = response.model_version
                problem = self._check(index, response) if self._check is not None else None
        self.calls.append(Call(start, time.monotonic() - start, code, version, problem))


class HealthProber:
    """Calls grpc.health.v1 Check every `interval_s` from a thread; records (start, latency, status or code)."""

    def __init__(self, target: str, *, interval_s: float = 0.1, timeout_s: float = 2.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self._interval_s, self._timeout_s = interval_s, timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-prober", daemon=True)
        self.results: list[tuple[float, float, str]] = []

    def __enter__(self) -> HealthProber:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self._timeout_s + 5)
        self._channel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                response = self._stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=self._timeout_s)
                outcome = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.RpcError as error:
                outcome = error.code().name
            self.results.append((start, time.monotonic() - start, outcome))
            self._stop.wait(self._interval_s)

    def summary(self) -> dict[str, Any]:
        outcomes = Counter(r[2] for r in self.results)
        latencies = [r[1] for r in self.results]
        return {
            "checks": len(self.results),
            "outcomes": dict(outcomes),
            "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        }
