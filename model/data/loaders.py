"""Reading interaction logs and side-feature tables from Parquet, CSV or TSV files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from model.data.columns import DataError, to_float, to_ids, to_strings, to_token_tuples
from model.data.parquet_files import is_parquet_collection, read_parquet_columns
from model.data.tables import ColumnKind, FeatureTable, InteractionLog

__all__ = ["DataError", "load_feature_table", "load_interactions", "read_arrow_table"]

logger = logging.getLogger(__name__)

_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_arrow_table(
    path: Path, columns: Sequence[str], *, delimiter: str | None = None, allow_extra_columns: bool = True
) -> pa.Table:
    """Reads the named columns of a Parquet, CSV or TSV file; delimited columns are read as strings.

    Args:
        path: the file; `.parquet`/`.pq`, `.csv`, `.tsv`/`.tab` (optionally compressed, e.g. `.csv.gz`),
            or any name when `delimiter` is given; or a directory or glob of Parquet files (one table).
        columns: the columns that must exist; the result holds exactly these, in this order.
        delimiter: field separator for delimited text; None picks it from the extension.
        allow_extra_columns: when False, columns other than `columns` are a `DataError`.

    Returns:
        A table with `columns` and at least one row.
    """
    name = path.name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    suffix = Path(name).suffix
    if is_parquet_collection(path):
        table, found = read_parquet_columns(path, columns, field=str(path))
        _check_columns(path, found, columns, allow_extra_columns)
        if table.num_rows == 0:
            raise DataError(f"{path}: no rows (expected columns {', '.join(columns)})")
        return table.select(list(columns))
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected columns {', '.join(columns)})")
    if suffix in _PARQUET_SUFFIXES:
        table, found = _read_parquet(path, columns)
    else:
        separator = delimiter if delimiter is not None else _DELIMITERS.get(suffix)
        if separator is None:
            raise DataError(
                f"{path}: cannot tell the format from the extension '{suffix}' (expected columns "
                f"{', '.join(columns)}); use .parquet, .csv or .tsv, or pass delimiter="
            )
        table = _read_delimited(path, columns, separator)
        found = table.column_names
    _check_columns(path, found, columns, allow_extra_columns)
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows (header only; expected columns {', '.join(columns)})")
    return table.select(list(columns))


def _read_parquet(path: Path, columns: Sequence[str]) -> tuple[pa.Table, list[str]]:
    """Reads only the wanted columns that exist; returns them and every column name in the file."""
    try:
        found = list(pq.read_schema(path).names)
        return pq.read_table(path, columns=[column for column in columns if column in found]), found
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(
            f"{path}: not a readable Parquet file (expected columns {', '.join(columns)}): {error}"
        ) from error


def _read_delimited(path: Path, columns: Sequence[str], separator: str) -> pa.Table:
    convert = pacsv.ConvertOptions(
        column_types={column: pa.string() for column in columns},
        strings_can_be_null=True,
        null_values=[""],
    )
    try:
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=separator), convert_options=convert)
    except pa.ArrowInvalid as error:
        if "Empty CSV file" in str(error):
            raise DataError(f"{path}: the file is empty (expected columns {', '.join(columns)})") from error
        raise DataError(f"{path}: cannot parse (expected columns {', '.join(columns)}): {error}") from error


def _check_columns(path: Path, found: list[str], wanted: Sequence[str], allow_extra_columns: bool) -> None:
    duplicated = sorted({column for column in found if found.count(column) > 1})
    if duplicated:
        raise DataError(f"{path}: duplicate column names {duplicated}")
    missing = [column for column in wanted if column not in found]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {found}")
    extra = [column for column in found if column not in wanted]
    if extra and not allow_extra_columns:
        raise DataError(f"{path}: unknown column(s) {extra}; expected only {list(wanted)}")


def load_interactions(
    path: str | Path,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    weight_col: str | None = None,
    delimiter: str | None = None,
    allow_extra_columns: bool = True,
) -> InteractionLog:
    """Loads a (user, item, time[, weight]) log; ids are always read as strings ("007" stays "007").

    Args:
        path: a `.parquet`, `.csv` or `.tsv` file, or a directory or glob of Parquet files (see
            `read_arrow_table`); the whole log is read into memory (`model.data.prepared_log` streams it).
        user_col: user id column.
        item_col: item id column.
        time_col: numeric time column (or a Parquet timestamp, converted to Unix seconds).
        weight_col: optional numeric weight or rating column; without it every weight is 1.0.
        delimiter: field separator for delimited text; None picks it from the extension.
        allow_extra_columns: when False, columns other than the named ones are a `DataError`.

    Returns:
        The log, in file order.

    Raises:
        DataError: missing/unknown column, no rows, null or empty id, non-numeric or null time or weight.
    """
    path = Path(path)
    named = [user_col, item_col, time_col] + ([weight_col] if weight_col is not None else [])
    table = read_arrow_table(path, named, delimiter=delimiter, allow_extra_columns=allow_extra_columns)
    if weight_col is None:
        weights = np.ones(table.num_rows, dtype=np.float32)
    else:
        weights = to_float(table[weight_col], path, weight_col, allow_null=False).astype(np.float32)
    log = InteractionLog(
        user_ids=to_ids(table[user_col], path, user_col),
        item_ids=to_ids(table[item_col], path, item_col),
        timestamps=to_float(table[time_col], path, time_col, allow_null=False),
        weights=weights,
        source=str(path),
    )
    logger.info("loaded %d interactions from %s", len(log), path)
    return log


def load_feature_table(
    path: str | Path,
    *,
    key: str,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    multi_categorical: Sequence[str] = (),
    token_separator: str = " ",
    delimiter: str | None = None,
    allow_extra_columns: bool = True,
) -> FeatureTable:
    """Loads side features keyed by an id column; only the named feature columns are kept.

    Args:
        path: a `.parquet`, `.csv` or `.tsv` file, or a directory or glob of Parquet files.
        key: id column; ids are read as strings and must be non-empty and distinct.
        categorical: string columns (null -> "").
        numeric: numeric columns, stored as float32 (null -> NaN).
        multi_categorical: columns of `token_separator`-separated tokens, stored as tuples.
        token_separator: separator of the tokens in `multi_categorical` columns.
        delimiter: field separator for delimited text; None picks it from the extension.
        allow_extra_columns: when False, columns other than the named ones are a `DataError`.

    Returns:
        The table, rows in file order.
    """
    path = Path(path)
    kinds: dict[str, ColumnKind] = {}
    for names, kind in (
        (categorical, ColumnKind.CATEGORICAL),
        (numeric, ColumnKind.NUMERIC),
        (multi_categorical, ColumnKind.MULTI_CATEGORICAL),
    ):
        for name in names:
            if name in kinds or name == key:
                raise ValueError(f"column '{name}' is named twice (key={key!r}, or in two kinds)")
            kinds[name] = kind
    table = read_arrow_table(path, [key, *kinds], delimiter=delimiter, allow_extra_columns=allow_extra_columns)
    columns: dict[str, np.ndarray] = {}
    for name, kind in kinds.items():
        if kind is ColumnKind.NUMERIC:
            columns[name] = to_float(table[name], path, name, allow_null=True).astype(np.float32)
        elif kind is ColumnKind.CATEGORICAL:
            columns[name] = to_strings(table[name], path, name)
        else:
            columns[name] = to_token_tuples(table[name], path, name, token_separator)
    ids = to_ids(table[key], path, key)
    try:
        features = FeatureTable(key=key, ids=ids, columns=columns, kinds=kinds, source=str(path))
    except ValueError as error:
        raise DataError(str(error)) from error
    logger.info("loaded %d rows of %d features from %s", len(features), len(kinds), path)
    return features
