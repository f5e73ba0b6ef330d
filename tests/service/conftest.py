"""Fixtures of the service tests: one exported bundle per session, and a server that serves it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.observer import RecordingObserver
from tests.service.helpers import ServerThread, export_test_bundle, server_config


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/movies/1/: a Flat-index bundle shared by the tests that only read it."""
    return export_test_bundle(tmp_path_factory.mktemp("models"), version=1)


@pytest.fixture(scope="module")
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture(scope="module")
def server(bundle_path: Path, observer: RecordingObserver) -> Iterator[ServerThread]:
    """A running server on the shared bundle (no reloads), with a recording observer."""
    config = server_config(bundle_path.parent.parent, reload_interval_s=3600.0)
    with ServerThread(config, observer=observer) as running:
        yield running
