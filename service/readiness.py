"""Which worker processes of one server are warm: the shared fact behind `--workers N` health.

Health is a property of the whole server, not of the worker a probe happens to reach through SO_REUSEPORT: it
reports SERVING only when every worker has a warm model. Each worker marks itself ready (a model swapped in)
or not (starting, shutting down) by creating or removing a marker file `ready-<index>` in the server's run
directory; the supervisor removes the marker of a worker that died. Files keep this free of shared memory and
of locks: a marker is created or removed atomically, and a worker's health loop only reads the directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerReadiness:
    """The readiness markers of `count` workers in `run_dir`, seen from worker `index`.

    Attributes:
        run_dir: the server's run directory (shared by every worker).
        index: this worker's index in [0, count).
        count: how many workers the server runs.
    """

    run_dir: Path
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"worker index must be in [0, {self.count}), got {self.index}")

    def mark(self, ready: bool) -> None:
        """Marks this worker warm (True) or not (False)."""
        path = marker_path(self.run_dir, self.index)
        if ready:
            temp = path.with_name(f".{path.name}.{os.getpid()}")
            temp.write_text(str(os.getpid()))
            os.replace(temp, path)
        else:
            path.unlink(missing_ok=True)

    def all_ready(self) -> bool:
        """Whether every worker of the server is warm."""
        return all(marker_path(self.run_dir, i).exists() for i in range(self.count))


def marker_path(run_dir: Path, index: int) -> Path:
    """The file whose presence says that worker `index` is warm (the supervisor removes it when one dies)."""
    return run_dir / f"ready-{index}"
