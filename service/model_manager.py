"""Hot reload: watches `models_dir/<name>/` and serves the versions its policy chooses, each loaded and warm.

At every poll the version policy (service/versions.py: the newest N good versions, or specific ones) chooses
from the versions on disk, and the labels file (service/version_labels.py) names versions kept loaded as well.
A version not loaded yet is opened with checksum verification, loaded, checked and warmed up in the loader
thread; only once every chosen version is ready does one reference assignment publish the new immutable
`ServedVersions` snapshot. Versions the policy no longer chooses leave the snapshot then (unloaded once the
last request holding their engine is answered: requests hold their engine, never the manager's set). A version
that fails is refused, logged and counted, and the versions serving keep serving; failures are remembered with
a fingerprint of the version directory and retried only once it changes. Nothing is unloaded to leave no
version serving.

A label that points at a version that is not on disk or does not load is refused with a logged error: it keeps
its previous version while that one still serves, else it is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path

from model.bundle.reader import BundleError, list_versions, open_bundle
from model.bundle.reserved import IndexMmapMode
from service.engine import Engine
from service.observer import NullObserver, ServingObserver
from service.served_versions import ServedVersions
from service.version_labels import LABELS_FILE, LabelsFile
from service.versions import VersionPolicy

logger = logging.getLogger(__name__)

EngineLoader = Callable[[Path], Engine]
# While nothing serves, the reason is logged at the first poll and then this often.
IDLE_WARNING_S = 60.0
Fingerprint = tuple[tuple[str, int, int], ...]


def load_engine(
    path: Path,
    *,
    gpu_device: int = 0,
    index_mmap: IndexMmapMode = "off",
    shard_gpus: bool = False,
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
    engine = Engine.from_bundle(
        bundle, gpu_device=gpu_device, index_mmap=index_mmap, shard_gpus=shard_gpus, observer=observer
    )
    engine.warm_up(warmup_batch_sizes)
    return engine


class ModelManager:
    """Holds the served versions and replaces them as the bundles on disk, the policy and the labels say.

    Args:
        models_dir: root of the bundles.
        model_name: the model directory `models_dir/model_name/` to watch.
        loader: builds a warm engine from a version directory; raises on a bad bundle.
        policy: which versions to keep loaded; default the newest good one.
        pinned_version: serve exactly this version (no upgrades): the policy of that one version; not with
            `policy`.
        observer: receives reload results and the versions that start and stop serving.
    """

    def __init__(
        self,
        models_dir: Path,
        model_name: str,
        loader: EngineLoader,
        *,
        policy: VersionPolicy | None = None,
        pinned_version: int | None = None,
        observer: ServingObserver | None = None,
    ) -> None:
        if policy is not None and pinned_version is not None:
            raise ValueError(f"a pinned version ({pinned_version}) and a version policy ({policy}) exclude each other")
        pinned = VersionPolicy.of_versions([pinned_version]) if pinned_version is not None else None
        self.policy = policy or pinned or VersionPolicy()
        self.model_dir = Path(models_dir) / model_name
        self._loader = loader
        self._observer = observer or NullObserver()
        self._labels = LabelsFile(self.model_dir / LABELS_FILE)
        self._served: ServedVersions | None = None
        self._failed: dict[int, Fingerprint] = {}
        self._reported_missing: list[int] = []
        self._reported_labels: dict[str, tuple[int, int | None]] = {}
        self._warned_idle_at: float | None = None

    @property
    def served(self) -> ServedVersions | None:
        """The versions serving now (an immutable snapshot), or None before the first successful load."""
        return self._served

    @property
    def current(self) -> Engine | None:
        """The engine answering requests that name no version, or None before the first successful load."""
        return self._served.default if self._served is not None else None

    @property
    def ready(self) -> bool:
        return self._served is not None

    def poll(self) -> Engine | None:
        """Loads the versions that the policy and the labels choose and publishes them if they changed (blocking).

        Returns the default engine of a newly published set, or None when nothing changed.
        """
        on_disk = list_versions(self.model_dir)
        self._report_missing(on_disk)
        self._failed = {v: fingerprint for v, fingerprint in self._failed.items() if v in on_disk}
        loaded = dict(self._served.engines) if self._served is not None else {}
        fresh: dict[int, Engine] = {}

        def usable(version: int) -> bool:
            if version in loaded or version in fresh:
                return True
            engine = self._load(version)
            if engine is not None:
                fresh[version] = engine
            return engine is not None

        chosen = self.policy.select(on_disk, usable)
        labels = self._apply_labels(self._labels.read(), on_disk, chosen, usable)
        keep = set(chosen) | set(labels.values())
        if not keep:
            self._warn_if_nothing_serves()
            return None
        engines = {v: fresh[v] if v in fresh else loaded[v] for v in keep}
        return self._publish(ServedVersions(engines, labels))

    def _apply_labels(
        self, wanted: Mapping[str, int], on_disk: list[int], chosen: list[int], usable: Callable[[int], bool]
    ) -> dict[str, int]:
        """The labels that apply: each label whose version serves or loads; a refused label keeps the version it
        pointed at before while that one serves, else it is dropped (logged once per change)."""
        previous = self._served.labels if self._served is not None else {}
        labels = {}
        for label, version in sorted(wanted.items()):
            if version in chosen or (version in on_disk and usable(version)):
                labels[label] = version
                self._reported_labels.pop(label, None)
                continue
            kept = previous.get(label)
            if kept is not None:
                labels[label] = kept
            if self._reported_labels.get(label) != (version, kept):
                self._reported_labels[label] = (version, kept)
                why = "is not on disk" if version not in on_disk else "was refused"
                logger.error(
                    "version label refused dir=%s label=%s version=%d: the version %s; the label %s",
                    self.model_dir, label, version, why, f"stays on {kept}" if kept is not None else "is dropped",
                )  # fmt: skip
        return labels

    def _publish(self, served: ServedVersions) -> Engine | None:
        """Makes `served` the set serving now unless it equals the current one; reports what started and stopped."""
        previous = self._served
        before = dict(previous.engines) if previous is not None else {}
        if previous is not None and before.keys() == served.engines.keys() and previous.labels == served.labels:
            return None
        self._served = served  # the atomic swap
        for version in sorted(served.engines.keys() - before.keys()):
            engine = served.engines[version]
            manifest = engine.manifest
            self._observer.on_model_loaded(
                manifest.model_name, version, manifest.index.factory, engine.index_device, engine.item_count
            )
        for version in sorted(before.keys() - served.engines.keys()):
            self._observer.on_model_unloaded(before[version].manifest.model_name, version)
        logger.info(
            "served versions dir=%s policy=%s versions=%s labels=%s default=%d unloaded=%s",
            self.model_dir, self.policy, sorted(served.engines, reverse=True), dict(served.labels),
            served.default_version, sorted(before.keys() - served.engines.keys()),
        )  # fmt: skip
        return served.default

    def _report_missing(self, on_disk: list[int]) -> None:
        missing = self.policy.missing(on_disk)
        if missing and missing != self._reported_missing:
            logger.warning("policy versions missing dir=%s versions=%s policy=%s", self.model_dir, missing, self.policy)
        self._reported_missing = missing

    def _warn_if_nothing_serves(self) -> None:
        """While no version serves, says why at the first poll and then every `IDLE_WARNING_S`, naming the path."""
        now = time.monotonic()
        if self._served is not None or (
            self._warned_idle_at is not None and now - self._warned_idle_at < IDLE_WARNING_S
        ):
            return
        self._warned_idle_at = now
        if not self.model_dir.is_dir():
            why = "the directory does not exist (check --models-dir and --model-name)"
        elif not list_versions(self.model_dir):
            why = "it holds no version directory (<version>/ with a bundle, e.g. 1/)"
        elif self._failed:
            why = f"every version was refused ({sorted(self._failed)}); see the reload errors above"
        else:
            why = f"no version on disk is one the policy ({self.policy}) names"
        logger.warning("no model to serve yet dir=%s: %s", self.model_dir, why)

    async def watch(
        self,
        interval_s: float,
        executor: Executor,
        on_swap: Callable[[Engine], Awaitable[None]],
    ) -> None:
        """Polls every `interval_s` seconds (loads run in `executor`) until cancelled; awaits `on_swap` with the
        default engine after each change of the served versions."""
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

    def _load(self, version: int) -> Engine | None:
        """A warm engine of `version`, or None if it fails now or failed before and its directory is unchanged."""
        path = self.model_dir / str(version)
        fingerprint = _fingerprint(path)
        if self._failed.get(version) == fingerprint:
            return None
        engine = self._try_load(path, version)
        if engine is None:
            self._failed[version] = fingerprint
        else:
            self._failed.pop(version, None)
        return engine

    def _try_load(self, path: Path, version: int) -> Engine | None:
        start = time.perf_counter()
        try:
            engine = self._loader(path)
            if engine.manifest.model_version != version:
                raise BundleError(f"manifest.json: model_version {engine.manifest.model_version} != {version}")
        except Exception as error:  # any failure refuses the bundle; the versions serving keep serving
            self._observer.on_reload("failure")
            logger.error("model reload refused path=%s reason=%s", path, error)
            return None
        self._observer.on_reload("success")
        logger.info(
            "model reload succeeded path=%s version=%d serving=%s index_device=%s seconds=%.2f",
            path,
            version,
            sorted(self._served.engines) if self._served is not None else [],
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
