"""`ServedVersions`: the immutable snapshot of the model versions serving now, their labels and the default.

The model manager builds a new snapshot whenever the loaded versions or their labels change and publishes it
with one reference assignment; a request resolves its engine from the snapshot it read once, so it never sees
half of a change. A request that names no version gets the version labelled `stable` when that label points
at a loaded version, else the newest loaded one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from service.errors import UnknownVersion
from service.version_labels import DEFAULT_LABEL

if TYPE_CHECKING:
    from service.engine import Engine


@dataclass(frozen=True)
class VersionInfo:
    """One served version as GetServiceInfo lists it."""

    version: int
    labels: tuple[str, ...]
    is_default: bool


@dataclass(frozen=True)
class ServedVersions:
    """Engines by version and labels by name; every label points at one of the engines.

    Attributes:
        engines: the loaded, warm engines by model version (at least one).
        labels: label -> version, restricted to loaded versions.
    """

    engines: Mapping[int, Engine]
    labels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.engines:
            raise ValueError("a served set holds at least one version")
        dangling = {label: v for label, v in self.labels.items() if v not in self.engines}
        if dangling:
            raise ValueError(f"labels {dangling} point at versions not loaded ({sorted(self.engines)})")
        object.__setattr__(self, "engines", MappingProxyType(dict(self.engines)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @property
    def default_version(self) -> int:
        return self.labels.get(DEFAULT_LABEL, max(self.engines))

    @property
    def default(self) -> Engine:
        """The engine answering requests that name no version."""
        return self.engines[self.default_version]

    def resolve(self, version: int | None = None, label: str | None = None) -> Engine:
        """The engine of `version`, else of `label`, else the default one.

        Raises:
            UnknownVersion: naming `model_version` or `version_label` and listing what is loaded.
        """
        if version is not None:
            engine = self.engines.get(version)
            if engine is None:
                raise UnknownVersion("model_version", f"version {version} is not loaded; {self._loaded()}")
            return engine
        if label is not None:
            target = self.labels.get(label)
            if target is None:
                raise UnknownVersion("version_label", f"label {label!r} is not assigned; {self._loaded()}")
            return self.engines[target]
        return self.default

    def describe(self) -> list[VersionInfo]:
        """Every served version, newest first, with its labels (sorted) and whether it is the default."""
        default = self.default_version
        return [
            VersionInfo(v, tuple(sorted(name for name, target in self.labels.items() if target == v)), v == default)
            for v in sorted(self.engines, reverse=True)
        ]

    def _loaded(self) -> str:
        shown = [f"{i.version}" + (f" ({', '.join(i.labels)})" if i.labels else "") for i in self.describe()]
        return f"loaded: {', '.join(shown)}"
