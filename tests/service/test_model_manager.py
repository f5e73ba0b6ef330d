"""ModelManager with a fake loader: newest good version wins, failures are refused, remembered and retried
only after the directory changes, pinning."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from model.bundle.reader import BundleError
from service.model_manager import ModelManager
from service.observer import RecordingObserver


class FakeLoader:
    """Loads any version directory that has no file named "bad"; records every attempt."""

    def __init__(self) -> None:
        self.attempts: list[int] = []

    def __call__(self, path: Path) -> Any:
        self.attempts.append(int(path.name))
        if (path / "bad").exists():
            raise BundleError(f"{path}: bad bundle")
        index = SimpleNamespace(factory="Flat")
        manifest = SimpleNamespace(model_name="movies", model_version=int(path.name), index=index)
        return SimpleNamespace(manifest=manifest, index_device="cpu", item_count=3)


def _version(models_dir: Path, version: int, *, bad: bool = False) -> Path:
    path = models_dir / "movies" / str(version)
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    if bad:
        (path / "bad").write_text("corrupt")
    return path


def _manager(models_dir: Path, **kwargs: Any) -> tuple[ModelManager, FakeLoader, RecordingObserver]:
    loader, observer = FakeLoader(), RecordingObserver()
    return ModelManager(models_dir, "movies", loader, observer=observer, **kwargs), loader, observer


def _version_of(manager: ModelManager) -> int | None:
    return None if manager.current is None else manager.current.manifest.model_version


def test_not_ready_without_versions_then_picks_up_the_newest(tmp_path: Path) -> None:
    manager, loader, observer = _manager(tmp_path)
    assert manager.poll() is None and not manager.ready
    _version(tmp_path, 1)
    _version(tmp_path, 2)
    (tmp_path / "movies" / ".tmp-export").mkdir()  # an export in progress is ignored

    assert manager.poll() is not None
    assert manager.ready and _version_of(manager) == 2 and loader.attempts == [2]
    assert manager.poll() is None and loader.attempts == [2]
    _version(tmp_path, 3)
    manager.poll()
    assert _version_of(manager) == 3
    assert observer.counters["reload:success"] == 2
    assert [entry[1] for entry in observer.loaded] == [2, 3]


def test_a_bad_version_is_refused_and_the_current_one_keeps_serving(tmp_path: Path) -> None:
    manager, loader, observer = _manager(tmp_path)
    _version(tmp_path, 1)
    manager.poll()
    bad = _version(tmp_path, 2, bad=True)

    for _ in range(5):
        assert manager.poll() is None
    assert _version_of(manager) == 1
    assert loader.attempts == [1, 2], "a failed version must not be retried while unchanged"
    assert observer.counters["reload:failure"] == 1

    (bad / "bad").unlink()  # the directory changed: try again
    manager.poll()
    assert _version_of(manager) == 2 and loader.attempts == [1, 2, 2]


def test_at_startup_a_bad_newest_version_falls_back_to_an_older_good_one(tmp_path: Path) -> None:
    manager, loader, _ = _manager(tmp_path)
    _version(tmp_path, 1)
    _version(tmp_path, 2)
    _version(tmp_path, 3, bad=True)
    manager.poll()
    assert _version_of(manager) == 2 and loader.attempts == [3, 2]


def test_a_pinned_version_is_served_and_never_upgraded(tmp_path: Path) -> None:
    manager, loader, _ = _manager(tmp_path, pinned_version=2)
    _version(tmp_path, 1)
    manager.poll()
    assert not manager.ready  # pinned version not there yet
    _version(tmp_path, 2)
    _version(tmp_path, 3)
    manager.poll()
    manager.poll()
    assert _version_of(manager) == 2 and loader.attempts == [2]


def test_watch_polls_in_the_executor_and_reports_swaps(tmp_path: Path) -> None:
    manager, _, _ = _manager(tmp_path)
    _version(tmp_path, 1)
    swapped: list[int] = []

    async def scenario() -> None:
        async def on_swap(engine: Any) -> None:
            swapped.append(engine.manifest.model_version)

        with ThreadPoolExecutor(1) as executor:
            task = asyncio.create_task(manager.watch(0.01, executor, on_swap))
            while not swapped:
                await asyncio.sleep(0.01)
            _version(tmp_path, 2)
            while len(swapped) < 2:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert swapped == [1, 2]


def test_while_nothing_serves_the_manager_says_why_naming_the_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models_dir = tmp_path / "models"
    manager, _, _ = _manager(models_dir)
    with caplog.at_level("WARNING", logger="service.model_manager"):
        manager.poll()
        manager.poll()  # not again before IDLE_WARNING_S
    (warning,) = [r.getMessage() for r in caplog.records if "no model to serve" in r.getMessage()]
    assert str(models_dir / "movies") in warning or "does not exist" in warning
    assert "does not exist" in warning
    caplog.clear()
    manager._warned_idle_at = None
    (models_dir / manager.model_dir.name).mkdir(parents=True, exist_ok=True)
    with caplog.at_level("WARNING", logger="service.model_manager"):
        manager.poll()
    assert any("holds no version directory" in r.getMessage() for r in caplog.records)
