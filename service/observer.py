"""Hooks through which the batcher, the engine and the model manager report what they do.

`ServingObserver` is the interface a metrics exporter implements (stage names and events follow the metric
names of docs/architecture.md); `NullObserver` ignores everything; `RecordingObserver` keeps counts in memory
(for tests and debugging). Hooks are called from the event loop and from worker threads: keep them cheap and
thread-safe.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Protocol

# Stages of a request, as reported to `on_stage`.
STAGES = ("queue", "query_tower", "index_search", "postprocess")


class ServingObserver(Protocol):
    """Receives serving events."""

    def on_queue_depth(self, depth: int) -> None:
        """Requests waiting in the batcher queue, after a change."""

    def on_rejected(self) -> None:
        """A request was refused because the queue was full."""

    def on_dropped(self, reason: str) -> None:
        """A queued request was dropped before compute; reason is "deadline" or "cancelled"."""

    def on_batch(self, size: int) -> None:
        """A batch of `size` live requests goes to the engine."""

    def on_stage(self, stage: str, seconds: float) -> None:
        """Time spent in one of `STAGES` (queue: per request; others: per batch)."""

    def on_model_loaded(self, model: str, version: int, index_type: str, device: str, item_count: int) -> None:
        """A model version now serves (one of possibly several, see service/versions.py)."""

    def on_model_unloaded(self, model: str, version: int) -> None:
        """A model version no longer serves: the policy dropped it (requests already holding it still finish)."""

    def on_version_requests(self, version: int, count: int, ok: bool, seconds: float) -> None:
        """`count` requests answered by model `version` ended (ok or not) after `seconds` in the servicer."""

    def on_reload(self, result: str) -> None:
        """A load attempt ended; result is "success" or "failure"."""


class NullObserver:
    """Ignores every event; subclass it to implement only some hooks."""

    def on_queue_depth(self, depth: int) -> None:
        pass

    def on_rejected(self) -> None:
        pass

    def on_dropped(self, reason: str) -> None:
        pass

    def on_batch(self, size: int) -> None:
        pass

    def on_stage(self, stage: str, seconds: float) -> None:
        pass

    def on_model_loaded(self, model: str, version: int, index_type: str, device: str, item_count: int) -> None:
        pass

    def on_model_unloaded(self, model: str, version: int) -> None:
        pass

    def on_version_requests(self, version: int, count: int, ok: bool, seconds: float) -> None:
        pass

    def on_reload(self, result: str) -> None:
        pass


class RecordingObserver(NullObserver):
    """Counts events in memory.

    Attributes:
        counters: "rejected", "dropped:<reason>", "reload:<result>" and "batches" counts.
        batch_sizes: every batch size seen, in order.
        max_queue_depth: the deepest queue seen.
        stage_seconds: total seconds by stage.
        loaded: (model, version, index_type, device) of every version that served.
        unloaded: (model, version) of every version that stopped serving.
        version_requests: requests by (version, ok).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self.max_queue_depth = 0
        self.stage_seconds: defaultdict[str, float] = defaultdict(float)
        self.loaded: list[tuple[str, int, str, str]] = []
        self.unloaded: list[tuple[str, int]] = []
        self.version_requests: Counter[tuple[int, bool]] = Counter()

    def on_queue_depth(self, depth: int) -> None:
        with self._lock:
            self.max_queue_depth = max(self.max_queue_depth, depth)

    def on_rejected(self) -> None:
        with self._lock:
            self.counters["rejected"] += 1

    def on_dropped(self, reason: str) -> None:
        with self._lock:
            self.counters[f"dropped:{reason}"] += 1

    def on_batch(self, size: int) -> None:
        with self._lock:
            self.counters["batches"] += 1
            self.batch_sizes.append(size)

    def on_stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_seconds[stage] += seconds

    def on_model_loaded(self, model: str, version: int, index_type: str, device: str, item_count: int) -> None:
        with self._lock:
            self.loaded.append((model, version, index_type, device))

    def on_model_unloaded(self, model: str, version: int) -> None:
        with self._lock:
            self.unloaded.append((model, version))

    def on_version_requests(self, version: int, count: int, ok: bool, seconds: float) -> None:
        with self._lock:
            self.version_requests[(version, ok)] += count

    def on_reload(self, result: str) -> None:
        with self._lock:
            self.counters[f"reload:{result}"] += 1
