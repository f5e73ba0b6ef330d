"""Version labels (`stable`, `canary`, ...) from `models/<name>/labels.json`, re-read whenever the file changes.

The file maps each label to a version number, e.g. `{"stable": 3, "canary": 4}`. Write it atomically (to a
temporary file in the same directory, then rename over `labels.json`). A file that cannot be read or parsed, or
that is not such a mapping, is refused with one logged error naming the path and the problem, and the labels
read before keep applying; a removed file means no labels. Which labels then apply to the versions that serve is
the model manager's decision (service/model_manager.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.json"
# The label that requests naming no version follow (when it points at a loaded version).
DEFAULT_LABEL = "stable"
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FileStamp = tuple[int, int, int]


def parse_labels(text: str) -> dict[str, int]:
    """The label -> version mapping of a labels file's text.

    Raises:
        ValueError: naming the first problem (not JSON, not an object, a bad label name, a version that is not an
            integer >= 1).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f'expected an object such as {{"stable": 3, "canary": 4}}, got {type(data).__name__}')
    labels = {}
    for label, version in data.items():
        if not LABEL_PATTERN.fullmatch(label):
            raise ValueError(f"label {label!r} must match {LABEL_PATTERN.pattern}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"label {label!r}: version must be an integer >= 1, got {version!r}")
        labels[label] = version
    return labels


class LabelsFile:
    """The labels of one model directory, re-read when the file's (size, mtime, inode) change.

    Args:
        path: the labels file, `models/<name>/labels.json`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: FileStamp | None = None
        self._labels: Mapping[str, int] = MappingProxyType({})

    def read(self) -> Mapping[str, int]:
        """The labels now: re-read if the file changed; the previous ones if the new file is refused."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return self._labels
        self._stamp = stamp
        if stamp is None:
            if self._labels:
                logger.info("version labels removed path=%s", self.path)
            self._labels = MappingProxyType({})
            return self._labels
        try:
            labels = parse_labels(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            logger.error("version labels refused path=%s reason=%s; keeping %s", self.path, error, dict(self._labels))
            return self._labels
        if labels != self._labels:
            logger.info("version labels read path=%s labels=%s", self.path, labels)
        self._labels = MappingProxyType(labels)
        return self._labels


def _stamp(path: Path) -> FileStamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino
