"""`FanOutObserver`: passes every serving event on to several observers (e.g. metrics and a test recorder)."""

from __future__ import annotations

from service.observer import ServingObserver


class FanOutObserver:
    """Calls each hook on every observer, in order.

    Args:
        *observers: the receivers.
    """

    def __init__(self, *observers: ServingObserver) -> None:
        self._observers = observers

    def on_queue_depth(self, depth: int) -> None:
        for observer in self._observers:
            observer.on_queue_depth(depth)

    def on_rejected(self) -> None:
        for observer in self._observers:
            observer.on_rejected()

    def on_dropped(self, reason: str) -> None:
        for observer in self._observers:
            observer.on_dropped(reason)

    def on_batch(self, size: int) -> None:
        for observer in self._observers:
            observer.on_batch(size)

    def on_stage(self, stage: str, seconds: float) -> None:
        for observer in self._observers:
            observer.on_stage(stage, seconds)

    def on_model_loaded(self, model: str, version: int, index_type: str, device: str, item_count: int) -> None:
        for observer in self._observers:
            observer.on_model_loaded(model, version, index_type, device, item_count)

    def on_model_unloaded(self, model: str, version: int) -> None:
        for observer in self._observers:
            observer.on_model_unloaded(model, version)

    def on_version_requests(self, version: int, count: int, ok: bool, seconds: float) -> None:
        for observer in self._observers:
            observer.on_version_requests(version, count, ok, seconds)

    def on_reload(self, result: str) -> None:
        for observer in self._observers:
            observer.on_reload(result)
