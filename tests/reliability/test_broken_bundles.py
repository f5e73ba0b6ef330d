"""Scenario 4: broken bundles are refused with a precise log line and a failure count; the old one serves on.

Each broken version is a good export damaged in one way and moved in with one rename (as a deploy tool
would), except the two cases about unfinished writes: an export still in its hidden temporary directory
(never a candidate), and a version directory filled file by file (refused while incomplete, loaded once
complete). At start-up with nothing but broken bundles the server stays NOT_SERVING and logs why.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import grpc
import numpy as np
import pytest

from model.bundle.export import file_checksums
from service.client import RetrievalClient
from tests.observability.helpers import scrape, value
from tests.reliability.helpers import Results, ServeProcess, wait_for
from tests.service.helpers import MODEL, ServerThread, export_test_bundle, server_config

SCENARIO = "broken_bundles"


def _refresh_checksums(path: Path) -> None:
    """Rewrites the manifest's checksums, so that only the damage itself can give the bundle away."""
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"] = file_checksums(path)
    (path / "manifest.json").write_text(json.dumps(manifest))


def truncated_index(path: Path) -> None:
    index = path / "index.faiss"
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    _refresh_checksums(path)


def checksum_mismatch(path: Path) -> None:
    embeddings = path / "item_embeddings.npy"
    data = bytearray(embeddings.read_bytes())
    data[len(data) // 2] ^= 0xFF
    embeddings.write_bytes(bytes(data))


def wrong_embedding_dim(path: Path) -> None:
    items = np.random.default_rng(0).standard_normal((400, 8)).astype(np.float32)
    np.save(path / "item_embeddings.npy", items)
    index = faiss.IndexFlatIP(8)
    index.add(items)
    faiss.write_index(index, str(path / "index.faiss"))
    _refresh_checksums(path)


def missing_file(path: Path) -> None:
    (path / "items.parquet").unlink()


def garbage_manifest(path: Path) -> None:
    (path / "manifest.json").write_bytes(os.urandom(64) + b"{not json")


# (name, damage, what the refusal's log line must say)
DAMAGES: list[tuple[str, Callable[[Path], None], str]] = [
    ("truncated index", truncated_index, "index.faiss: cannot read the FAISS index"),
    ("checksum mismatch", checksum_mismatch, "item_embeddings.npy: sha256 mismatch"),
    ("wrong embedding dim", wrong_embedding_dim, "item_embeddings.npy: shape (400, 8) float32, manifest says (400, 16"),
    ("missing file", missing_file, "items.parquet: listed in the manifest but missing"),
    ("garbage manifest", garbage_manifest, "manifest.json: not valid JSON"),
]


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name} {record.getMessage()}")


class DeleteWhenOpened(logging.Handler):
    """Deletes a bundle directory the moment the loader has validated it, before the heavy files load."""

    def __init__(self, victim: Path) -> None:
        super().__init__(logging.INFO)
        self.victim, self.fired = victim, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fired and record.getMessage().startswith(f"bundle opened path={self.victim} "):
            self.fired = True
            shutil.rmtree(self.victim)


@pytest.fixture
def capture() -> Iterator[LogCapture]:
    handler = LogCapture()
    for name in ("service.model_manager", "model.bundle.reader"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    yield handler
    for name in ("service.model_manager", "model.bundle.reader"):
        logging.getLogger(name).removeHandler(handler)


@pytest.mark.slow
def test_broken_bundles_are_refused_while_the_old_version_serves(
    models_dir: Path, tmp_path: Path, capture: LogCapture, results: Results
) -> None:
    export_test_bundle(models_dir, version=1)
    model_dir, staging = models_dir / MODEL, tmp_path / "staging"
    config = server_config(models_dir, reload_interval_s=0.05, metrics_port=0)
    outcomes: dict[str, dict[str, object]] = {}
    with ServerThread(config) as server, RetrievalClient(server.target) as client:
        assert server.handles is not None and server.handles.metrics_port
        port = server.handles.metrics_port

        def failures() -> float:
            return value(scrape(port), "retrieval_model_reloads_total", result="failure") or 0.0

        def refused(name: str, version: int, expected: str, serving: str) -> None:
            wait_for(lambda: failures() >= before + 1, timeout_s=60)
            path = f"path={model_dir / str(version)} "
            lines = [
                line.replace(str(models_dir) + "/", "") for line in capture.lines if path in line and "refused" in line
            ]
            response = client.retrieve("u1", 3)
            log = lines[-1] if lines else None
            outcomes[name] = {"version": version, "log": log, "serving": response.model_version}
            assert lines and expected in lines[-1], (expected, lines)
            assert response.model_version == serving and len(response.candidates) == 3
            assert client.health() == "SERVING"

        version = 1
        for name, damage, expected in DAMAGES:
            version += 1
            before = failures()
            path = export_test_bundle(staging, version=version, seed=version)
            damage(path)
            os.rename(path, model_dir / str(version))
            refused(name, version, expected, serving="1")

        # Deleted while loading: validated, then gone before the query tower loads.
        version += 1
        before = failures()
        victim = model_dir / str(version)
        deleter = DeleteWhenOpened(victim)
        logging.getLogger("model.bundle.reader").addHandler(deleter)
        try:
            os.rename(export_test_bundle(staging, version=version, seed=version), victim)
            refused("deleted while loading", version, "query_tower/: cannot load the SavedModel", serving="1")
        finally:
            logging.getLogger("model.bundle.reader").removeHandler(deleter)
        assert deleter.fired

        # Still being written by export_bundle: a hidden temporary directory is never a candidate.
        version += 1
        before = failures()
        hidden = model_dir / ".tmp-inflight"
        shutil.copytree(export_test_bundle(staging, version=version, seed=version), hidden)
        polls_before = len(capture.lines)
        time.sleep(0.5)  # ten poll intervals
        assert failures() == before and client.retrieve("u1", 3).model_version == "1"
        assert not any(".tmp-inflight" in line for line in capture.lines[polls_before:])
        os.rename(hidden, model_dir / str(version))
        wait_for(lambda v=version: client.retrieve("u1", 3).model_version == str(v), timeout_s=60)
        outcomes["export not yet renamed"] = {"version": version, "attempts_while_hidden": 0, "then": "loaded"}
        serving = str(version)

        # Filled file by file in place (no atomic rename): refused while incomplete, loaded once complete.
        version += 1
        before = failures()
        source = export_test_bundle(staging, version=version, seed=version)
        partial = model_dir / str(version)
        shutil.copytree(source / "query_tower", partial / "query_tower")
        refused("version directory written in place", version, "manifest.json: cannot read", serving=serving)
        for name in ("items.parquet", "item_embeddings.npy", "index.faiss", "manifest.json"):
            shutil.copy2(source / name, partial / name)
        wait_for(lambda v=version: client.retrieve("u1", 3).model_version == str(v), timeout_s=60)
        outcomes["version directory written in place"]["then"] = "loaded once complete"

        samples = scrape(port)
    results.record(
        SCENARIO,
        cases=outcomes,
        reload_failures=value(samples, "retrieval_model_reloads_total", result="failure"),
        reload_successes=value(samples, "retrieval_model_reloads_total", result="success"),
    )
    assert value(samples, "retrieval_model_reloads_total", result="failure") == len(DAMAGES) + 2
    assert value(samples, "retrieval_model_reloads_total", result="success") == 3


@pytest.mark.slow
def test_start_with_only_broken_bundles_stays_not_serving_and_says_why(tmp_path: Path, results: Results) -> None:
    models_dir = tmp_path / "models"
    (models_dir / MODEL).mkdir(parents=True)
    for version, damage in ((1, checksum_mismatch), (2, garbage_manifest)):
        path = export_test_bundle(tmp_path / "staging", version=version, seed=version)
        damage(path)
        os.rename(path, models_dir / MODEL / str(version))
    server = ServeProcess(models_dir, tmp_path / "serve.log", "--reload-interval-s", "0.2", wait_serving=False)
    with server:
        wait_for(lambda: server.log().count("model reload refused") >= 2, timeout_s=60)
        health = server.health()
        with RetrievalClient(server.target) as client, pytest.raises(grpc.RpcError) as error:
            client.retrieve("u1", 3, timeout_s=5)
        failures = value(scrape(server.metrics_port), "retrieval_model_reloads_total", result="failure")
        log = [line for line in server.log().splitlines() if "model reload refused" in line]
    results.record(
        SCENARIO,
        startup_health=health,
        startup_call=f"{error.value.code().name}: {error.value.details()}",
        startup_reload_failures=failures,
        startup_log=[line.split(" ", 2)[-1].replace(str(models_dir) + "/", "") for line in log],
    )
    assert health == "NOT_SERVING"
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE and "no model loaded" in error.value.details()
    assert failures == 2  # each refused once, not retried while unchanged
    assert any("/1 reason=item_embeddings.npy: sha256 mismatch" in line for line in log), log
    assert any("/2 reason=manifest.json: not valid JSON" in line for line in log), log
