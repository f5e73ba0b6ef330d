"""Fixtures of the observability tests: one small exported bundle per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.helpers import export_test_bundle


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/movies/1/: a Flat-index bundle of 400 items."""
    return export_test_bundle(tmp_path_factory.mktemp("models"), version=1)
