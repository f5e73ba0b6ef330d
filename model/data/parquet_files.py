"""Sharded Parquet inputs: a file, a directory of files or a glob, resolved to an ordered list of files.

Spark, Ray Data, BigQuery exports and DuckDB all write a table as a directory of `part-*.parquet` files; the
training input accepts that directory (searched recursively, so Hive-style `key=value/` folders work), a glob
such as `logs/2024-*/*.parquet`, or one file. The order is the sorted path order: it is the log's file order,
which breaks ties between equal timestamps (the later row counts as the later event).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from model.data.columns import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = frozenset("*?[")


def is_parquet_collection(spec: str | Path) -> bool:
    """Whether `spec` names several Parquet files at once: a directory or a glob pattern."""
    text = str(spec)
    return bool(_GLOB_CHARS & set(text)) or Path(text).is_dir()


def resolve_parquet_files(spec: str | Path, *, field: str) -> list[Path]:
    """The Parquet files that `spec` names, in sorted path order.

    Args:
        spec: a Parquet file, a directory (every `*.parquet`/`*.pq` below it, hidden files and folders
            such as `_SUCCESS` or `.tmp/` skipped) or a glob pattern (`**` allowed).
        field: the config field or flag that gave `spec`, for messages.

    Returns:
        At least one file.

    Raises:
        DataError: nothing matches, or a matched file is not Parquet.
    """
    text = str(spec)
    if not text:
        raise DataError(f"{field}: empty path (expected a Parquet file, a directory of them or a glob)")
    path = Path(text)
    if _GLOB_CHARS & set(text):
        files = [Path(match) for match in glob.glob(text, recursive=True) if Path(match).is_file()]
    elif path.is_dir():
        files = [
            found
            for found in path.rglob("*")
            if found.is_file() and not any(part.startswith((".", "_")) for part in found.relative_to(path).parts)
        ]
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{field}: {text}: no such file or directory")
    files = sorted(files, key=str)
    if not files:
        raise DataError(f"{field}: {text}: matches no files")
    not_parquet = [str(f) for f in files if f.suffix.lower() not in PARQUET_SUFFIXES]
    if not_parquet:
        raise DataError(f"{field}: {text}: not Parquet (expected .parquet or .pq): {not_parquet[:3]}")
    return files


def parquet_dataset(files: Sequence[Path], columns: Sequence[str], *, field: str) -> pads.Dataset:
    """A pyarrow dataset over `files` whose schema holds every one of `columns`.

    The schema comes from the first file (the files of one table share it); a file that lacks a column
    fails when it is read, naming that file.
    """
    try:
        dataset = pads.dataset([str(f) for f in files], format="parquet")
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{field}: not readable as Parquet: {error}") from error
    found = dataset.schema.names
    missing = [column for column in columns if column not in found]
    if missing:
        raise DataError(f"{field}: {files[0]}: missing column(s) {missing}; columns found: {found}")
    return dataset


def read_parquet_columns(spec: str | Path, columns: Sequence[str], *, field: str) -> tuple[pa.Table, list[str]]:
    """Reads the wanted columns that exist in every file `spec` names; returns them and the schema's names."""
    files = resolve_parquet_files(spec, field=field)
    try:
        dataset = pads.dataset([str(f) for f in files], format="parquet")
        found = list(dataset.schema.names)
        return dataset.to_table(columns=[column for column in columns if column in found]), found
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{field}: {spec}: not a readable Parquet table: {error}") from error
