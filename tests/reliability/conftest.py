"""Fixtures of the reliability suite: bundles, and the results file that docs/reliability.md is made from.

Each test module names its scenario in `SCENARIO`; tests record numbers with the `results` fixture, and the
outcome and duration of every test is added here. At the end of the session the results go to
`$RELIABILITY_RESULTS` when set (the report script sets it), else to `reliability-results.json` in pytest's
temporary directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import Results
from tests.service.helpers import export_test_bundle

_RESULTS = Results()
_STARTED = time.monotonic()


@pytest.fixture(scope="session")
def results() -> Results:
    return _RESULTS


@pytest.fixture(scope="session")
def reliability_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/movies/1/: the 400-item Flat bundle of the service tests, read-only for the tests sharing it."""
    return export_test_bundle(tmp_path_factory.mktemp("models"), version=1)


@pytest.fixture
def models_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty models root with the model directory created."""
    root = tmp_path / "models"
    (root / "movies").mkdir(parents=True)
    yield root


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    scenario = getattr(getattr(item, "module", None), "SCENARIO", None)
    if scenario is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _RESULTS.outcome(scenario, item.name, report.outcome, report.duration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _RESULTS.scenarios:
        return
    target = os.environ.get("RELIABILITY_RESULTS")
    path = Path(target) if target else session.config._tmp_path_factory.getbasetemp() / "reliability-results.json"  # type: ignore[attr-defined]
    _RESULTS.write(path, time.monotonic() - _STARTED)
