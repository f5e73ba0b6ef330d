"""Reading a FAISS index file memory-mapped where its type allows, so that a hot reload does not double memory.

A memory-mapped index keeps its bulk (IVF inverted lists, flat codes) in the page cache, backed by the
immutable bundle file: the old and the new version of a reload share nothing in anonymous memory, and pages the
kernel needs back are dropped rather than swapped. FAISS (1.15) maps:
- IVF indexes (IVF-Flat, IVF-PQ) with `IO_FLAG_MMAP`: the inverted lists become read-only
  `OnDiskInvertedLists` over the file (the FAISS wiki's "Indexes that do not fit in RAM");
- flat-codes indexes (Flat) and HNSW's vector storage with `IO_FLAG_MMAP_IFC` (HNSW's graph stays in memory).
Other types (e.g. LSH) are read into memory, with a log line saying so. The two flags cannot be combined
(FAISS refuses an IVF file read with both), hence the choice by the file's type code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss

from model.bundle.reserved import INDEX_MMAP_MODES as MMAP_MODES
from model.bundle.reserved import IndexMmapMode as MmapMode

logger = logging.getLogger(__name__)

__all__ = ["MMAP_AUTO_MIN_BYTES", "MMAP_MODES", "MmapMode", "mmap_flag", "read_index"]
# "auto" maps index files from this size up; smaller ones are read into memory (no page faults on first use).
MMAP_AUTO_MIN_BYTES = 256 * 1024 * 1024
# FAISS type codes (the file's first 4 bytes) by the read flag that maps them.
_IVF_TYPES = frozenset({b"IwFl", b"IwPQ"})
_FLAT_CODES_TYPES = frozenset({b"IxFI", b"IxF2", b"IHNf"})


def mmap_flag(type_code: bytes) -> int | None:
    """The FAISS read flag that memory-maps an index of this 4-byte type code, or None if none does."""
    if type_code in _IVF_TYPES:
        return int(faiss.IO_FLAG_MMAP)
    if type_code in _FLAT_CODES_TYPES:
        return int(faiss.IO_FLAG_MMAP_IFC)
    return None


def read_index(path: str | Path, mode: MmapMode = "off", *, auto_min_bytes: int = MMAP_AUTO_MIN_BYTES) -> faiss.Index:
    """Reads a FAISS index file, memory-mapped (read-only) when `mode` asks and the index type allows.

    Args:
        path: the index file; it must not change while the index is in use (bundles are immutable).
        mode: "on" maps every type that can be mapped; "auto" maps those of at least `auto_min_bytes`;
            "off" reads into memory.
        auto_min_bytes: the size from which "auto" maps.

    Returns:
        The index (searchable; a memory-mapped one refuses `add`).

    Raises:
        ValueError: for an unknown mode.
        RuntimeError: from FAISS, for an unreadable file.
    """
    if mode not in MMAP_MODES:
        raise ValueError(f"index mmap mode must be one of {', '.join(MMAP_MODES)}; got {mode!r}")
    path = Path(path)
    size = path.stat().st_size
    if mode == "off" or (mode == "auto" and size < auto_min_bytes):
        return faiss.read_index(str(path))
    with path.open("rb") as f:
        type_code = f.read(4)
    flag = mmap_flag(type_code)
    if flag is None:
        logger.info(
            "index read into memory path=%s type=%s bytes=%d reason=FAISS cannot memory-map this index type",
            path,
            type_code.decode("ascii", "replace"),
            size,
        )
        return faiss.read_index(str(path))
    index = faiss.read_index(str(path), flag | faiss.IO_FLAG_READ_ONLY)
    logger.info("index memory-mapped path=%s type=%s bytes=%d", path, type_code.decode("ascii"), size)
    return index
