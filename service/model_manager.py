"""Hot reload: watches `models_dir/<name>/` and swaps in each new bundle version once it is loaded and warm.

A new version is opened with checksum verification, loaded, checked and warmed up in a worker thread; only
then does one reference assignment make it current, so requests already batched finish on the engine they
were validated against. A version that fails is refused, logged and counted; the current one keeps serving.
Failures are remembered with a fingerprint of the version directory and retried only once it changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path

from model.bundle.reader import BundleError, list_versions, open_bundle
from service.engine import Engine
from service.observer import NullObserver, ServingObserver

logger = logging.getLogger(__name__)

EngineLoader = Callable[[Path], Engine]
# While nothing serves, the reason is logged at the first poll and then this often.
IDLE_WARNING_S = 60.0
Fingerprint = tuple[tuple[str, int, int], ...]


def load_engine(
    path: Path,
    *,
    gpu_device: int = 0,
    warmup_batch_sizes: tuple[int, ...] = (1, 8),
    observer: ServingObserver | None = None,
) -> Engine:
    """Opens (verifying checksums), loads and warms up the bundle at `models/<name>/<version>/`.

    Raises:
        BundleError: if the bundle is invalid, belongs to another model or fails to load.
    """
    bundle = open_bundle(path, verify_checksums=True)
    if bundle.manifest.model_name != path.parent.name:
        raise BundleError(f"manifest.json: model_name {bundle.manifest.model_name!r} != directory {path.parent.name!r}")
    engine = Engine.from_bundle(bundle, gpu_device=gpu_device, observer=observer)
    engine.warm_up(warmup_batch_sizes)
    return engine


class ModelManager:
    """Holds the serving engine and replaces it when a newer version appears.

    Args:
        models_dir: root of the bundles.
        model_name: the model directory `models_dir/model_name/` to watch.
        loader: builds a warm engine from a version directory; raises on a bad bundle.
        pinned_version: serve exactly this version (no upgrades); None follows the latest good version.
        observer: receives reload results and the model that serves.
    """

    def __init__(
        self,
        models_dir: Path,
        model_name: str,
        loader: EngineLoader,
        *,
        pinned_version: int | None = None,
        observer: ServingObserver | None = None,
    ) -> None:
        self.model_dir = Path(models_dir) / model_name
        self._loader = loader
        self._pinned = pinned_version
        self._observer = observer or NullObserver()
        self._current: Engine | None = None
        self._failed: dict[int, Fingerprint] = {}
        self._reported_missing = False
        self._warned_idle_at: float | None = None

    @property
    def current(self) -> Engine | None:
        """The engine serving now, or None before the first successful load."""
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def poll(self) -> Engine | None:
        """Loads the best candidate version newer than the current one, if any (blocking).

        Candidates are the pinned version, or every version above the current one from the newest down;
        the first that loads becomes current. Returns the new engine, or None when nothing changed.
        """
        for version in self._candidates():
            path = self.model_dir / str(version)
            fingerprint = _fingerprint(path)
            if self._failed.get(version) == fingerprint:
                continue
            engine = self._try_load(path, version)
            if engine is not None:
                self._failed.pop(version, None)
                self._current = engine  # the atomic swap
                self._observer.on_model_loaded(
                    engine.manifest.model_name,
                    version,
                    engine.manifest.index.factory,
                    engine.index_device,
                    engine.item_count,
                )
                return engine
            self._failed[version] = fingerprint
        self._warn_if_nothing_serves()
        return None

    def _warn_if_nothing_serves(self) -> None:
        """While no version serves, says why at the first poll and then every `IDLE_WARNING_S`, naming the path."""
        now = time.monotonic()
        if self._current is not None or (
            self._warned_idle_at is not None and now - self._warned_idle_at < IDLE_WARNING_S
        ):
            return
        self._warned_idle_at = now
        if not self.model_dir.is_dir():
            why = "the directory does not exist (check --models-dir and --model-name)"
        elif not list_versions(self.model_dir):
            why = "it holds no version directory (<version>/ with a bundle, e.g. 1/)"
        else:
            why = f"every version was refused ({sorted(self._failed)}); see the reload errors above"
        logger.warning("no model to serve yet dir=%s: %s", self.model_dir, why)

    async def watch(
        self,
        interval_s: float,
        executor: Executor,
        on_swap: Callable[[Engine], Awaitable[None]],
    ) -> None:
        """Polls every `interval_s` seconds (loads run in `executor`) until cancelled; awaits `on_swap` after each
        swap."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                engine = await loop.run_in_executor(executor, self.poll)
            except Exception:
                logger.exception("model poll failed dir=%s", self.model_dir)
                engine = None
            if engine is not None:
                await on_swap(engine)
            await asyncio.sleep(interval_s)

    def _candidates(self) -> list[int]:
        versions = list_versions(self.model_dir)
        current = self._current.manifest.model_version if self._current is not None else 0
        if self._pinned is not None:
            missing = self._pinned not in versions
            if missing and not self._reported_missing:
                logger.warning("pinned version missing dir=%s version=%d", self.model_dir, self._pinned)
            self._reported_missing = missing
            return [] if missing or self._pinned == current else [self._pinned]
        return [v for v in reversed(versions) if v > current]

    def _try_load(self, path: Path, version: int) -> Engine | None:
        start = time.perf_counter()
        try:
            engine = self._loader(path)
            if engine.manifest.model_version != version:
                raise BundleError(f"manifest.json: model_version {engine.manifest.model_version} != {version}")
        except Exception as error:  # any failure refuses the bundle; the current engine keeps serving
            self._observer.on_reload("failure")
            logger.error("model reload refused path=%s reason=%s", path, error)
            return None
        self._observer.on_reload("success")
        previous = self._current.manifest.model_version if self._current is not None else None
        logger.info(
            "model reload succeeded path=%s version=%d previous=%s index_device=%s seconds=%.2f",
            path,
            version,
            previous,
            engine.index_device,
            time.perf_counter() - start,
        )
        return engine


def _fingerprint(path: Path) -> Fingerprint:
    """(relative path, size, mtime_ns) of every entry under `path`: changes whenever the directory does."""
    try:
        entries = [(p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")]
        return (*sorted(entries), ("", 0, path.stat().st_mtime_ns))
    except OSError:
        return ()
