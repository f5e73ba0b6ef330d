"""A real Prometheus scrapes a real server: every dashboard and alert expression returns data, rates are right.

Alert rules are checked three ways: Prometheus loads the group with every rule healthy; each rule's measured
parts (the operands of `unless`/`and`/`or`, without the trailing threshold comparison) return data; and the
no-model rule's full expression names the replica while it has no model and nothing once a model serves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import yaml

from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from tests.observability.helpers import call
from tests.observability.promql import (
    ALERTS,
    PrometheusApi,
    alert_rules,
    alert_signals,
    config_scraping,
    dashboard_queries,
)
from tests.process_helpers import free_port, require_binary, running
from tests.service.helpers import MODEL, ServerThread, export_test_bundle, server_config

RATE, SECONDS, INVALID_EVERY = 20.0, 10.0, 10  # steady traffic: 200 calls, every 10th with k = 0
UNAVAILABLE_SCRAPED = 'increase(grpc_server_handled_total{grpc_code="Unavailable"}[1m]) > 0'
SERVICE_SELECTOR = 'job="retrieval",grpc_service="retrieval.v1.RetrievalService",grpc_method="RetrieveCandidates"'


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def _steady_traffic(stub: pb_grpc.RetrievalServiceStub) -> tuple[list[grpc.StatusCode], float, float]:
    """RATE calls per second for SECONDS, on a fixed schedule; returns the codes and the wall-clock span."""
    count, start = int(RATE * SECONDS), time.time()
    codes = []
    for i in range(count):
        delay = start + i / RATE - time.time()
        if delay > 0:
            time.sleep(delay)
        codes.append(call(stub, 0 if i % INVALID_EVERY == INVALID_EVERY - 1 else 5))
    return codes, start, time.time()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dashboard_and_alert_queries_against_real_prometheus(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    models_dir = tmp_path / "models"
    (models_dir / MODEL).mkdir(parents=True)
    staged = export_test_bundle(tmp_path / "staging", version=1)
    config = server_config(models_dir, reload_interval_s=0.2, metrics_port=0)
    with ServerThread(config).start(wait_ready=False) as server, grpc.insecure_channel(server.target) as channel:
        assert server.handles is not None and server.handles.metrics_port
        prometheus_config = tmp_path / "prometheus.yml"
        target = f"127.0.0.1:{server.handles.metrics_port}"
        prometheus_config.write_text(yaml.safe_dump(config_scraping(target, ALERTS)))
        port = free_port()
        args = [
            binary, f"--config.file={prometheus_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ]  # fmt: skip
        stub = pb_grpc.RetrievalServiceStub(channel)
        with running(args, f"http://127.0.0.1:{port}/-/ready"):
            api = PrometheusApi(port)
            no_model = next(r["expr"] for r in alert_rules() if r["alert"] == "RetrievalNoModelLoaded")

            # No model yet: calls end UNAVAILABLE (a server-side error) and the no-model rule names the replica.
            def unavailable_seen() -> bool:
                assert call(stub, 5) == grpc.StatusCode.UNAVAILABLE
                return bool(api.finite_values(UNAVAILABLE_SCRAPED))

            _wait_for(unavailable_seen, 20, "UNAVAILABLE calls scraped twice")
            assert [s["metric"]["instance"] for s in api.query(no_model)] == [target]

            os.rename(staged, models_dir / MODEL / "1")
            server.run(server.handles.wait_ready(60))
            codes, start, end = _steady_traffic(stub)
            sent = len(codes)
            total = f"sum(grpc_server_handled_total{{{SERVICE_SELECTOR},grpc_code=~'OK|InvalidArgument'}})"
            _wait_for(lambda: api.finite_values(total) == [sent], 15, "the last calls to be scraped")

            results = {title + " | " + expr: api.query(expr) for title, expr in dashboard_queries("30s")}
            rules = api.get("/api/v1/rules")["groups"]
            signals = {s: api.query(s) for rule in alert_rules() for s in alert_signals(rule["expr"])}
            no_model_after = api.query(no_model)
            measured = api.finite_values(f"sum(rate(grpc_server_handled_total{{{SERVICE_SELECTOR}}}[8s]))", end - 0.5)
            invalid = api.finite_values(
                f"sum(grpc_server_handled_total{{{SERVICE_SELECTOR},grpc_code='InvalidArgument'}})"
            )

    assert codes.count(grpc.StatusCode.INVALID_ARGUMENT) == sent // INVALID_EVERY
    assert codes.count(grpc.StatusCode.OK) == sent - sent // INVALID_EVERY
    assert invalid == [sent // INVALID_EVERY]
    assert measured and measured[0] == pytest.approx(sent / (end - start), rel=0.2), (measured, sent / (end - start))
    print(f"measured {measured[0]:.2f} calls/s, sent {sent / (end - start):.2f} calls/s")
    _print_summary(results, signals)
    empty = [query for query, result in results.items() if not _finite(result)]
    assert not empty, f"dashboard queries without data: {empty}"
    (group,) = rules
    assert sorted(r["name"] for r in group["rules"]) == sorted(r["alert"] for r in alert_rules())
    assert all(r["health"] == "ok" and not r.get("lastError") for r in group["rules"]), group["rules"]
    silent = [signal for signal, result in signals.items() if not _finite(result)]
    assert not silent, f"alert expressions without data: {silent}"
    assert no_model_after == []


def _finite(result: list[dict]) -> bool:
    return any(value not in ("NaN", "+Inf", "-Inf") for value in (sample["value"][1] for sample in result))


def _print_summary(results: dict[str, list[dict]], signals: dict[str, list[dict]]) -> None:
    """Shown with `pytest -s`: what each panel and alert queried and how many series came back."""
    for query, result in [*results.items(), *signals.items()]:
        values = ", ".join(f"{s['value'][1][:8]}" for s in result[:4])
        print(f"{len(result)} series [{values}] <- {query}")
