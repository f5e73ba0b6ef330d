"""ModelManager with a fake loader: newest good version wins, failures are refused, remembered and retried
only after the directory changes, pinning, several versions side by side and their labels."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from model.bundle.reader import BundleError
from service.model_manager import ModelManager
from service.observer import RecordingObserver
from service.versions import VersionPolicy


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


def _served(manager: ModelManager) -> tuple[list[int], dict[str, int], int]:
    served = manager.served
    assert served is not None
    return sorted(served.engines), dict(served.labels), served.default_version


def _labels(models_dir: Path, text: str) -> None:
    """Rewrites movies/labels.json atomically (a temporary file, then a rename)."""
    temporary = models_dir / "movies" / ".labels.json.tmp"
    temporary.write_text(text)
    os.replace(temporary, models_dir / "movies" / "labels.json")


def test_latest_two_serves_the_two_newest_and_unloads_the_oldest(tmp_path: Path) -> None:
    manager, loader, observer = _manager(tmp_path, policy=VersionPolicy(latest=2))
    for version in (1, 2, 3):
        _version(tmp_path, version)
    assert manager.poll() is not None
    assert _served(manager) == ([2, 3], {}, 3) and loader.attempts == [3, 2]
    before = manager.served
    _version(tmp_path, 4)
    manager.poll()
    assert _served(manager) == ([3, 4], {}, 4) and loader.attempts == [3, 2, 4]
    assert before is not None and sorted(before.engines) == [2, 3], "a published set never changes"
    assert manager.served is not None and manager.served.engines[3] is before.engines[3], "3 was not reloaded"
    assert [entry[1] for entry in observer.loaded] == [2, 3, 4] and observer.unloaded == [("movies", 2)]


def test_labelled_versions_stay_loaded_and_stable_is_the_default(tmp_path: Path) -> None:
    manager, loader, _ = _manager(tmp_path)
    for version in (1, 2, 3):
        _version(tmp_path, version)
    _labels(tmp_path, '{"stable": 1, "canary": 2}')
    manager.poll()
    assert _served(manager) == ([1, 2, 3], {"stable": 1, "canary": 2}, 1)
    assert manager.current is not None and manager.current.manifest.model_version == 1
    _labels(tmp_path, '{"stable": 2}')  # promote the canary
    assert manager.poll() is not None, "a label change alone publishes a new set"
    assert _served(manager) == ([2, 3], {"stable": 2}, 2)
    assert sorted(loader.attempts) == [1, 2, 3], "no version was loaded twice"
    _labels(tmp_path, "{}")
    manager.poll()
    assert _served(manager) == ([3], {}, 3)


def test_a_refused_label_keeps_its_previous_version_and_a_broken_file_keeps_the_labels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager, _, _ = _manager(tmp_path)
    _version(tmp_path, 1)
    _version(tmp_path, 2)
    _version(tmp_path, 3, bad=True)
    _labels(tmp_path, '{"stable": 1}')
    manager.poll()
    with caplog.at_level("ERROR"):
        _labels(tmp_path, '{"stable": 3, "canary": 9}')  # 3 does not load, 9 is not there
        manager.poll()
        manager.poll()
        assert _served(manager) == ([1, 2], {"stable": 1}, 1)
        _labels(tmp_path, '{"stable": ')
        manager.poll()
        assert _served(manager) == ([1, 2], {"stable": 1}, 1)
    refused = [r.getMessage() for r in caplog.records if "version label refused" in r.getMessage()]
    assert len(refused) == 2, "each refusal is logged once, not at every poll"
    assert "label=canary version=9: the version is not on disk; the label is dropped" in refused[0]
    assert "label=stable version=3: the version was refused; the label stays on 1" in refused[1]
    assert any("version labels refused" in r.getMessage() for r in caplog.records)


def test_a_pin_and_a_policy_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        _manager(tmp_path, pinned_version=2, policy=VersionPolicy(latest=2))
    manager, _, _ = _manager(tmp_path, policy=VersionPolicy.of_versions([2, 1]))
    for version in (1, 2, 3):
        _version(tmp_path, version)
    manager.poll()
    assert _served(manager) == ([1, 2], {}, 2)


def test_nothing_is_unloaded_to_leave_no_version_serving(tmp_path: Path) -> None:
    manager, _, _ = _manager(tmp_path)
    path = _version(tmp_path, 1)
    manager.poll()
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()  # the only serving version vanished from disk
    assert manager.poll() is None
    assert _served(manager) == ([1], {}, 1)
    _version(tmp_path, 2)
    manager.poll()
    assert _served(manager) == ([2], {}, 2)
