"""Which model versions the server keeps loaded: the newest N good ones, or exactly the versions named.

A `VersionPolicy` is built once at the edge (`retrieval-serve --versions latest:2` or `--versions 3,5`; the
older `--pin-version N` is `--versions N`) and chooses, at every poll of the model manager, the versions to
serve from those on disk. Versions that labels point at (service/version_labels.py) are kept loaded in
addition, as TF Serving does; so at most N (or len(specific)) + the number of labels are ever loaded.
Imports neither TensorFlow nor FAISS: the command line builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

LATEST_PREFIX = "latest:"


@dataclass(frozen=True)
class VersionPolicy:
    """The versions to keep loaded: exactly one of `latest` and `specific` is set.

    Attributes:
        latest: keep the newest `latest` versions that load (a refused one is skipped, so an older good one
            serves instead); None with `specific`.
        specific: keep exactly these versions, once they are on disk and load; empty with `latest`.
    """

    latest: int | None = 1
    specific: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if (self.latest is None) == (not self.specific):
            raise ValueError(f"a version policy has either latest or specific versions, got {self!r}")
        if self.latest is not None and self.latest < 1:
            raise ValueError(f"latest must be >= 1, got {self.latest}")
        if any(v < 1 for v in self.specific) or len(set(self.specific)) != len(self.specific):
            raise ValueError(f"specific versions must be distinct and >= 1, got {list(self.specific)}")
        object.__setattr__(self, "specific", tuple(sorted(self.specific, reverse=True)))

    @classmethod
    def of_versions(cls, versions: Iterable[int]) -> VersionPolicy:
        """Exactly these versions (a pin is the policy of one version)."""
        return cls(latest=None, specific=tuple(versions))

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """`latest:N` or a comma-separated list of versions, e.g. `3,5`.

        Raises:
            ValueError: naming the text received and the syntax expected.
        """
        spec = text.strip()
        try:
            if spec.startswith(LATEST_PREFIX):
                return cls(latest=int(spec.removeprefix(LATEST_PREFIX)))
            return cls.of_versions(int(part) for part in spec.split(","))
        except ValueError as error:
            raise ValueError(
                f"--versions expects latest:N (N >= 1) or versions like 3,5 (each >= 1, distinct), got {text!r}"
                f" ({error})"
            ) from None

    def __str__(self) -> str:
        return f"{LATEST_PREFIX}{self.latest}" if self.latest is not None else ",".join(map(str, self.specific))

    def select(self, on_disk: Sequence[int], usable: Callable[[int], bool]) -> list[int]:
        """The versions to serve, newest first.

        Args:
            on_disk: the versions present, in any order.
            usable: whether a version can serve (loaded, or loads now); asked lazily, newest first, and for
                `latest` only until enough are found, so that older versions are not loaded for nothing.
        """
        present = sorted(set(on_disk), reverse=True)
        if self.latest is None:
            return [v for v in self.specific if v in present and usable(v)]
        chosen: list[int] = []
        for version in present:
            if len(chosen) == self.latest:
                break
            if usable(version):
                chosen.append(version)
        return chosen

    def missing(self, on_disk: Sequence[int]) -> list[int]:
        """Specific versions the policy names that are not on disk (always empty for `latest`)."""
        return [v for v in self.specific if v not in set(on_disk)]
