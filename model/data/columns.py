"""Arrow column -> NumPy conversions; failures raise a `DataError` naming the file, column and value."""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.data.tables import object_array

Column: TypeAlias = pa.Array | pa.ChunkedArray


class DataError(ValueError):
    """An input file cannot be used: missing or unknown column, no rows, bad value or type."""


def _flat(column: Column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks else pa.array([], type=column.type)
    return column


def _first_true(mask: pa.Array) -> int:
    return int(pc.index(pc.fill_null(mask, False), True).as_py())


def _as_string(column: pa.Array, source: str | Path, name: str) -> pa.Array:
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column
    if pa.types.is_dictionary(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind):
        return pc.cast(column, pa.string())
    raise DataError(f"{source}: column '{name}' has type {kind}, expected strings (or integers)")


def to_ids(column: Column, source: str | Path, name: str) -> np.ndarray:
    """Converts an id column to an object array of str; a null or empty id is a `DataError`.

    Args:
        column: string, dictionary or integer ids [n].
        source: file the column came from, for messages.
        name: column name, for messages.

    Returns:
        Object array of str [n].
    """
    strings = _as_string(_flat(column), source, name)
    missing = pc.or_kleene(strings.is_null(), pc.equal(strings, ""))
    if pc.any(missing).as_py():
        row = _first_true(missing)
        count = pc.sum(pc.cast(pc.fill_null(missing, True), pa.int64())).as_py()
        raise DataError(f"{source}: column '{name}' has {count} null or empty ids, the first at data row {row + 1}")
    return np.asarray(strings.to_numpy(zero_copy_only=False), dtype=object)


def to_strings(column: Column, source: str | Path, name: str) -> np.ndarray:
    """Converts a categorical column to an object array of str, nulls as "".

    Args:
        column: string, dictionary or integer values [n].
        source: file the column came from, for messages.
        name: column name, for messages.

    Returns:
        Object array of str [n].
    """
    strings = pc.fill_null(_as_string(_flat(column), source, name), "")
    return np.asarray(strings.to_numpy(zero_copy_only=False), dtype=object)


def to_token_tuples(column: Column, source: str | Path, name: str, separator: str = " ") -> np.ndarray:
    """Splits a string column into tuples of tokens; empty tokens and nulls give no tokens.

    Args:
        column: strings such as "Action Comedy" [n].
        source: file the column came from, for messages.
        name: column name, for messages.
        separator: token separator.

    Returns:
        Object array of tuple[str, ...] [n].
    """
    strings = pc.fill_null(_as_string(_flat(column), source, name), "")
    pieces = pc.split_pattern(strings, separator).to_pylist()
    return object_array((tuple(token for token in row if token) for row in pieces), len(pieces))


def to_float(column: Column, source: str | Path, name: str, *, allow_null: bool) -> np.ndarray:
    """Converts a numeric (or numeric-string, or timestamp) column to float64.

    Timestamps become Unix seconds. Strings are parsed; a value that is not a number is a `DataError`
    that quotes it.

    Args:
        column: values [n].
        source: file the column came from, for messages.
        name: column name, for messages.
        allow_null: whether nulls are allowed (they become NaN); otherwise a null is a `DataError`.

    Returns:
        float64 array [n].
    """
    values = _flat(column)
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        numbers = pc.cast(values, pa.float64())
    elif pa.types.is_timestamp(kind):
        micros = pc.cast(pc.cast(values, pa.timestamp("us", tz=kind.tz)), pa.int64())
        numbers = pc.divide(pc.cast(micros, pa.float64()), 1e6)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        numbers = _parse_floats(pc.cast(values, pa.string()), source, name)
    else:
        raise DataError(f"{source}: column '{name}' has type {kind}, expected a numeric type")
    if not allow_null and numbers.null_count:
        row = _first_true(numbers.is_null())
        raise DataError(
            f"{source}: column '{name}' has {numbers.null_count} null values, the first at data row {row + 1}"
        )
    return np.asarray(numbers.to_numpy(zero_copy_only=False), dtype=np.float64)


def _parse_floats(strings: pa.Array, source: str | Path, name: str) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(strings)
    blank_as_null = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    try:
        return pc.cast(blank_as_null, pa.float64())
    except pa.ArrowInvalid as error:
        for row, value in enumerate(blank_as_null.to_pylist()):
            if value is None:
                continue
            try:
                float(value)
            except ValueError:
                raise DataError(
                    f"{source}: column '{name}' must be numeric, but data row {row + 1} holds {value!r}"
                ) from error
        raise DataError(f"{source}: column '{name}' must be numeric: {error}") from error


def strings_to_float(values: np.ndarray, source: str | Path, name: str) -> np.ndarray:
    """Parses an object array of numeric strings ("" = missing -> NaN) into float64 [n]."""
    return to_float(pa.array(values.tolist(), type=pa.string()), source, name, allow_null=True)
