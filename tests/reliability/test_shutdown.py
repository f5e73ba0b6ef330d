"""Scenario 7: SIGTERM to a real `retrieval-serve` process under load.

Health (watched over a stream) flips to NOT_SERVING, every request sent before the signal completes OK
(including those in flight at that moment), every request sent before the client saw NOT_SERVING is answered
OK or UNAVAILABLE, and the process exits with status 0 within the grace period. A call is in flight for the
server once its handler runs: one sent in the last `ACCEPT_LAG_S` before the signal may still be on its way and
is then new, answered UNAVAILABLE; every call sent earlier completes OK.

CANCELLED is allowed only for a call sent after the client saw NOT_SERVING and at least
`DRAIN_S - ACCEPT_LAG_S` after the signal: the server answers UNAVAILABLE for `DRAIN_S` (and until its
admitted calls are done) before it closes its port, and a call that reaches grpc-core in the instant of the
close, before it is handed to the application, is cancelled by grpc-core. A client that stops sending once
it sees NOT_SERVING never sees one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.load import LoadRunner, between
from tests.reliability.helpers import Results, ServeProcess, load_requests

SCENARIO = "shutdown"
GRACE_S = 5.0
DRAIN_S = 0.5
ACCEPT_LAG_S = 0.05  # from the client's send to the server's handler, under this load
EXIT_SLACK_S = 2.0  # interpreter and TensorFlow teardown after the server has stopped


class HealthWatch:
    """Follows grpc.health.v1 Watch from a thread: (time.monotonic, status or final code) per message."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self.events: list[tuple[float, str]] = []
        self._stream = health_pb2_grpc.HealthStub(self._channel).Watch(health_pb2.HealthCheckRequest(service=""))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self._stream:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(message.status)
                self.events.append((time.monotonic(), status))
        except grpc.RpcError as error:
            self.events.append((time.monotonic(), str(error.code().name)))

    def close(self) -> None:
        self._stream.cancel()
        self._thread.join(5)
        self._channel.close()


@pytest.mark.slow
def test_sigterm_under_load_drains_and_exits_within_the_grace_period(
    reliability_bundle: Path, tmp_path: Path, results: Results
) -> None:
    args = ("--grace-period-s", str(GRACE_S), "--drain-s", str(DRAIN_S))
    server = ServeProcess(reliability_bundle.parent.parent, tmp_path / "serve.log", *args)
    with server:
        assert server.proc is not None
        watch = HealthWatch(server.target)
        runner = LoadRunner(server.target, load_requests(64), concurrency=16, timeout_s=10.0).start()
        time.sleep(3.0)
        signalled = time.monotonic()
        server.terminate()
        returncode = server.proc.wait(GRACE_S + 30)
        exited = time.monotonic()
        time.sleep(0.5)
        stats = runner.stop()
        watch.close()
        log = server.log()

    not_serving_at = next((t for t, status in watch.events if status == "NOT_SERVING" and t >= signalled), None)
    assert not_serving_at is not None, watch.events
    before = between(stats.calls, runner.started_at, signalled)
    in_flight = [c for c in before.calls if c.end > signalled]
    settled = between(stats.calls, runner.started_at, signalled - ACCEPT_LAG_S)
    racing = between(stats.calls, signalled - ACCEPT_LAG_S, signalled)
    unobserved = between(stats.calls, signalled, not_serving_at)  # sent after the signal, before NOT_SERVING seen
    after = between(stats.calls, not_serving_at, exited + 0.5)
    cancelled = [c for c in after.calls if c.code == "CANCELLED"]

    results.record(
        SCENARIO,
        grace_period_s=GRACE_S,
        drain_s=DRAIN_S,
        requests_before_sigterm=before.summary(),
        in_flight_at_sigterm=len(in_flight),
        in_flight_codes=dict(Counter(c.code for c in in_flight)),
        requests_sent_within_50ms_before_sigterm=dict(racing.codes),
        requests_before_not_serving_seen=dict(unobserved.codes),
        requests_after_not_serving_seen=after.summary(),
        cancelled_sent_after_s=[round(c.start - signalled, 3) for c in cancelled],
        health_events=[status for _, status in watch.events],
        not_serving_after_s=not_serving_at - signalled,
        exit_after_s=exited - signalled,
        exit_code=returncode,
    )
    assert returncode == 0, log[-2000:]
    assert dict(settled.codes) == {"OK": len(settled.calls)}, settled.codes
    assert set(racing.codes) <= {"OK", "UNAVAILABLE"}, racing.codes
    assert Counter(c.code for c in in_flight)["OK"] > 0, Counter(c.code for c in in_flight)
    assert set(unobserved.codes) <= {"OK", "UNAVAILABLE"}, unobserved.codes
    assert set(after.codes) <= {"UNAVAILABLE", "CANCELLED"} and after.codes["UNAVAILABLE"] > 0, after.codes
    racing_close = [c.start - signalled for c in cancelled]
    assert all(t >= DRAIN_S - ACCEPT_LAG_S for t in racing_close), racing_close
    assert len(cancelled) <= 16, after.codes  # at most one per caller: those racing the port's close
    assert exited - signalled <= GRACE_S + EXIT_SLACK_S
    assert "signal received, shutting down" in log and "server stopped" in log
