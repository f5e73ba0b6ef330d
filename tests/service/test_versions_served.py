"""Versions side by side on a real server on loopback: routing by version and label under load while a version is
replaced, label switches, a request that outlives its version, UNKNOWN_VERSION details, GetServiceInfo versions and
the per-version metrics."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.processes import ServeCommand
from service import query_cli
from service.batcher import BatcherConfig
from service.client import RetrievalClient, build_request, error_details
from service.observer import RecordingObserver
from service.versions import VersionPolicy
from tests.observability.helpers import scrape, value
from tests.service.helpers import MODEL, ServerThread, export_test_bundle, server_config


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/movies/{1,2,3}/ exported once: each test links the versions it needs into its own models dir."""
    staging = tmp_path_factory.mktemp("staged")
    for version in (1, 2, 3):
        export_test_bundle(staging, version=version, seed=version)
    return staging / MODEL


def _models(tmp_path: Path, staged: Path, versions: tuple[int, ...], labels: str | None = None) -> Path:
    models_dir = tmp_path / "models"
    (models_dir / MODEL).mkdir(parents=True)
    for version in versions:
        _publish(models_dir, staged, version)
    if labels is not None:
        _label(models_dir, labels)
    return models_dir


def _publish(models_dir: Path, staged: Path, version: int) -> None:
    os.symlink(staged / str(version), models_dir / MODEL / str(version))  # appears at once, like an export's rename


def _label(models_dir: Path, text: str) -> None:
    """Rewrites labels.json atomically: a temporary file in the same directory, then a rename."""
    temporary = models_dir / MODEL / ".labels.json.tmp"
    temporary.write_text(text)
    os.replace(temporary, models_dir / MODEL / "labels.json")


def _wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def _served(server: ServerThread) -> list[int]:
    assert server.handles is not None
    served = server.handles.manager.served
    return sorted(served.engines) if served is not None else []


class Callers:
    """Threads that call RetrieveCandidates in a loop, each asking one way; records (way, version) or the error."""

    WAYS: dict[str, dict[str, Any]] = {
        "default": {},
        "canary": {"version_label": "canary"},
        "version 2": {"version": 2},
    }

    def __init__(self, target: str, per_way: int = 2) -> None:
        self._stop = threading.Event()
        self.answers: defaultdict[tuple[str, int], list[str]] = defaultdict(list)
        self.failures: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, args=(target, way, i), daemon=True)
            for way in self.WAYS
            for i in range(per_way)
        ]

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, target: str, way: str, index: int) -> None:
        with RetrievalClient(target, retries=False) as client:
            while not self._stop.is_set():
                try:
                    response = client.retrieve(f"u{index}", 5, timeout_s=10, **self.WAYS[way])
                    self.answers[(way, index)].append(response.model_version)
                except grpc.RpcError as error:
                    self.failures.append(f"{way}: {error.code().name} {error.details()}")

    def versions(self, way: str) -> list[str]:
        return sorted({v for (w, _), answers in self.answers.items() if w == way for v in answers})

    def count(self, version: str) -> int:
        return sum(answers.count(version) for answers in self.answers.values())


@pytest.mark.slow
def test_two_versions_serve_under_load_while_one_is_replaced_with_no_failed_request(
    tmp_path: Path, staged: Path
) -> None:
    models_dir = _models(tmp_path, staged, (1, 2), labels='{"stable": 1, "canary": 2}')
    observer = RecordingObserver()
    config = server_config(models_dir, versions=VersionPolicy(latest=2), reload_interval_s=0.05, metrics_port=0)
    with ServerThread(config, observer=observer) as server:
        assert _served(server) == [1, 2] and server.handles is not None and server.handles.metrics_port
        with Callers(server.target) as callers:
            _wait_for(lambda: all(len(callers.answers[(way, 0)]) >= 5 for way in Callers.WAYS))
            _publish(models_dir, staged, 3)  # the replacement: 3 becomes the canary, the old canary stable
            _label(models_dir, '{"stable": 2, "canary": 3}')
            _wait_for(lambda: _served(server) == [2, 3])
            counts = {way: len(callers.answers[(way, 0)]) for way in Callers.WAYS}
            _wait_for(lambda: all(len(callers.answers[(way, 0)]) >= counts[way] + 5 for way in Callers.WAYS))
        samples = scrape(server.handles.metrics_port)
    assert callers.failures == []
    assert callers.versions("default") == ["1", "2"] and callers.versions("canary") == ["2", "3"]
    assert callers.versions("version 2") == ["2"]
    for (way, _), answers in callers.answers.items():  # each caller sees the switch once, never back
        assert answers == sorted(answers), f"{way}: {answers}"
    assert observer.unloaded == [(MODEL, 1)]
    # The per-version request counts equal what the callers saw; the unloaded version's series are gone.
    for version in ("2", "3"):
        counted = value(samples, "retrieval_version_requests_total", model_version=version, result="ok")
        assert counted == callers.count(version) > 0
        assert value(samples, "retrieval_version_requests_total", model_version=version, result="error") == 0
    assert callers.count("1") > 0
    assert value(samples, "retrieval_version_requests_total", model_version="1", result="ok") is None
    info = sorted(dict(labels)["version"] for (name, labels), v in samples.items() if name == "retrieval_model_info")
    assert info == ["2", "3"]


def test_a_request_waiting_for_a_version_that_is_unloaded_is_answered_by_it(tmp_path: Path, staged: Path) -> None:
    models_dir = _models(tmp_path, staged, (1, 2), labels='{"old": 1}')
    observer = RecordingObserver()
    config = server_config(models_dir, batcher=BatcherConfig(max_concurrent_batches=1), reload_interval_s=0.05)
    with ServerThread(config, observer=observer) as server, RetrievalClient(server.target) as client:
        assert server.handles is not None and _served(server) == [1, 2]
        gate = threading.Event()
        server.handles.compute_executor.submit(gate.wait, 30)  # hold the compute thread: the call waits in the queue
        waiting = client.stub.RetrieveCandidates.future(build_request("u1", 4, version=1), timeout=30)
        _wait_for(lambda: observer.max_queue_depth >= 1)  # resolved to version 1 and queued
        _label(models_dir, "{}")  # nothing keeps 1 loaded any more (latest:1 keeps 2)
        _wait_for(lambda: _served(server) == [2])
        assert observer.unloaded == [(MODEL, 1)]
        gate.set()
        response = waiting.result()
        assert (response.model_version, len(response.candidates)) == ("1", 4)
        with pytest.raises(grpc.RpcError) as gone:
            client.retrieve("u1", 4, version=1)
        assert error_details(gone.value).reason == "UNKNOWN_VERSION"


def test_unknown_versions_decode_on_the_client_and_service_info_lists_the_versions(
    tmp_path: Path, staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models_dir = _models(tmp_path, staged, (1, 2), labels='{"stable": 1}')
    with ServerThread(server_config(models_dir)) as server, RetrievalClient(server.target) as client:
        info = client.service_info()
        assert info.model_version == "1", "stable is the default"
        listed = [(v.model_version, list(v.labels), v.is_default) for v in info.versions]
        assert listed == [(2, [], False), (1, ["stable"], True)]
        assert client.service_info(version=2).model_version == "2"
        assert client.service_info(version_label="stable").model_version == "1"
        assert client.retrieve("u1", 3).model_version == "1"
        assert client.retrieve("u1", 3, version=2).model_version == "2"
        assert client.similar_items(["item0001"], 3, version_label="stable").model_version == "1"

        with pytest.raises(grpc.RpcError) as by_version:
            client.retrieve("u1", 3, version=7)
        details = error_details(by_version.value)
        assert (details.code, details.reason) == ("NOT_FOUND", "UNKNOWN_VERSION")
        assert details.field_violations == (("model_version", "version 7 is not loaded; loaded: 2, 1 (stable)"),)
        assert details.message == "model_version: version 7 is not loaded; loaded: 2, 1 (stable)"

        batch = [build_request("u1", 3, version=2), build_request("u2", 3, version_label="canary")]
        with pytest.raises(grpc.RpcError) as in_batch:
            client.retrieve_batch(batch)
        fields = [field for field, _ in error_details(in_batch.value).field_violations]
        assert fields == ["requests[1].version_label"]
        answers = client.retrieve_batch([batch[0], build_request("u2", 3, version_label="stable"), batch[0]])
        assert [a.model_version for a in answers] == ["2", "1", "2"]

        for call in (
            lambda: client.service_info(version_label="canary"),
            lambda: client.similar_items(["item0001"], 3, version=9),
        ):
            with pytest.raises(grpc.RpcError) as error:
                call()
            assert error_details(error.value).reason == "UNKNOWN_VERSION"
        with pytest.raises(ValueError, match="not both"):
            client.retrieve("u1", 3, version=1, version_label="stable")

        assert query_cli.main(["--target", server.target, "--user", "u1", "-k", "2", "--model-version", "2"]) == 0
        assert capsys.readouterr().out.startswith(f"model {MODEL} version 2")
        assert query_cli.main(["--target", server.target, "--user", "u1", "--version-label", "canary"]) == 1
        assert "NOT_FOUND" in capsys.readouterr().err


def _answers(target: str, count: int = 16, **choice: Any) -> set[str]:
    """Versions answering `count` calls, each over a connection of its own (so that every worker is asked)."""
    seen = set()
    for _ in range(count):
        with RetrievalClient(target, retries=False) as client:
            seen.add(client.retrieve("u1", 3, **choice).model_version)
    return seen


@pytest.mark.slow
def test_every_worker_serves_the_versions_and_follows_a_label_switch(tmp_path: Path, staged: Path) -> None:
    models_dir = _models(tmp_path, staged, (1, 2), labels='{"stable": 1}')
    args = ("--workers", "2", "--versions", "latest:2", "--gpu-device", "-1", "--reload-interval-s", "0.1")
    with ServeCommand(models_dir, MODEL, tmp_path / "serve.log", *args) as server:
        assert _answers(server.target) == {"1"} and _answers(server.target, version=2) == {"2"}
        _label(models_dir, '{"stable": 2}')
        _wait_for(lambda: _answers(server.target) == {"2"})
        samples = scrape(server.metrics_port)
        counted = value(samples, "retrieval_version_requests_total", model_version="2", result="ok")
        assert counted is not None and counted >= 32, "requests summed over the workers' files"
        info = {
            dict(labels)["version"] for (name, labels), v in samples.items() if name == "retrieval_model_info" and v
        }
        assert info == {"1", "2"}, "both versions stay loaded (latest:2) in every worker"
