"""MovieLens-100K from the `recbole` wheel, read through a small reader of RecBole atomic files.

RecBole atomic files (`.inter`, `.user`, `.item`) are tab-separated, unquoted, with a header of `name:type`
fields; types are `token` (str), `float`, `token_seq` and `float_seq` (space-separated values).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from model.data.columns import DataError, strings_to_float, to_float, to_strings, to_token_tuples
from model.data.tables import ColumnKind, FeatureTable, InteractionLog, object_array

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install --no-deps recbole"
ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")
_NUMBER = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")
AGE_EDGES = (18, 25, 35, 45, 50, 56)
AGE_BUCKETS = ("under18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


@dataclass(frozen=True, eq=False)
class AtomicFile:
    """The columns of a RecBole atomic file.

    Attributes:
        columns: field name -> values [n]: token -> object array of str ("" = missing), float -> float64
            (NaN = missing), token_seq -> object array of tuple[str, ...], float_seq -> object array of
            tuple[float, ...].
        field_types: field name -> its declared type, in file order.
        source: the file path.
    """

    columns: dict[str, np.ndarray]
    field_types: dict[str, str]
    source: str


@dataclass(frozen=True, eq=False)
class MovieLensData:
    """MovieLens-100K: ratings as weighted interactions plus user and item side features."""

    interactions: InteractionLog
    users: FeatureTable
    items: FeatureTable


def read_atomic_file(path: str | Path) -> AtomicFile:
    """Reads a RecBole atomic file, typing each field from its `name:type` header.

    Args:
        path: a `.inter`, `.user`, `.item` (or other atomic) file.

    Returns:
        The typed columns.

    Raises:
        DataError: unreadable or empty file, malformed header, unknown field type, bad float value.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            header = handle.readline().rstrip("\r\n")
    except OSError as error:
        raise DataError(f"{path}: cannot read the atomic file: {error}") from error
    field_types = _parse_header(path, header)
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(skip_rows=1, column_names=list(field_types)),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in field_types},
            strings_can_be_null=True,
            null_values=[""],
        ),
    )
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows after the header (fields {', '.join(field_types)})")
    columns = {name: _convert(table[name], kind, path, name) for name, kind in field_types.items()}
    return AtomicFile(columns=columns, field_types=field_types, source=str(path))


def _parse_header(path: Path, header: str) -> dict[str, str]:
    if not header:
        raise DataError(f"{path}: the file is empty (expected a 'name:type' header)")
    field_types: dict[str, str] = {}
    for field in header.split("\t"):
        name, separator, kind = field.rpartition(":")
        if not separator or not name:
            raise DataError(f"{path}: header field {field!r} is not of the form 'name:type'")
        if kind not in ATOMIC_TYPES:
            raise DataError(f"{path}: column '{name}' has unknown type {kind!r}; known: {ATOMIC_TYPES}")
        if name in field_types:
            raise DataError(f"{path}: column '{name}' appears twice in the header")
        field_types[name] = kind
    return field_types


def _convert(column: pa.ChunkedArray, kind: str, path: Path, name: str) -> np.ndarray:
    if kind == "token":
        return to_strings(column, path, name)
    if kind == "float":
        return to_float(column, path, name, allow_null=True)
    tokens = to_token_tuples(column, path, name)
    if kind == "token_seq":
        return tokens
    try:
        return object_array((tuple(float(token) for token in row) for row in tokens), len(tokens))
    except ValueError as error:
        raise DataError(f"{path}: column '{name}' (float_seq) holds a non-number: {error}") from error


def movielens_100k_dir() -> Path:
    """Directory of MovieLens-100K inside the installed `recbole` package (which is not imported).

    Raises:
        DataError: `recbole` is not installed, or its copy lacks the dataset.
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"MovieLens-100K comes with the recbole package, which is not installed: {INSTALL_HINT}")
    directory = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (directory / "ml-100k.inter").is_file():
        raise DataError(f"{directory}: no ml-100k.inter in the installed recbole; reinstall: {INSTALL_HINT}")
    return directory


def load_movielens_100k(directory: str | Path | None = None) -> MovieLensData:
    """Loads MovieLens-100K: 100,000 ratings of 1,682 movies by 943 users.

    Args:
        directory: folder with `ml-100k.inter/.user/.item`; None uses `movielens_100k_dir()`.

    Returns:
        Interactions (weight = rating, time = Unix seconds) and user and item feature tables.
    """
    folder = Path(directory) if directory is not None else movielens_100k_dir()
    data = MovieLensData(
        interactions=_interactions(read_atomic_file(folder / "ml-100k.inter")),
        users=_users(read_atomic_file(folder / "ml-100k.user")),
        items=_items(read_atomic_file(folder / "ml-100k.item")),
    )
    logger.info(
        "loaded MovieLens-100K from %s: %d interactions, %d users, %d items",
        folder,
        len(data.interactions),
        len(data.users),
        len(data.items),
    )
    return data


def _require(atomic: AtomicFile, *names: str) -> None:
    missing = [name for name in names if name not in atomic.columns]
    if missing:
        raise DataError(f"{atomic.source}: missing column(s) {missing}; columns found: {list(atomic.columns)}")


def _interactions(atomic: AtomicFile) -> InteractionLog:
    _require(atomic, "user_id", "item_id", "rating", "timestamp")
    for name in ("user_id", "item_id"):
        if np.any(atomic.columns[name] == ""):
            raise DataError(f"{atomic.source}: column '{name}' has empty ids")
    for name in ("rating", "timestamp"):
        if np.isnan(atomic.columns[name]).any():
            raise DataError(f"{atomic.source}: column '{name}' has missing values")
    return InteractionLog(
        user_ids=atomic.columns["user_id"],
        item_ids=atomic.columns["item_id"],
        timestamps=atomic.columns["timestamp"],
        weights=atomic.columns["rating"],
        source=atomic.source,
    )


def _numeric(atomic: AtomicFile, name: str, *, lenient: bool = False) -> np.ndarray:
    """A field as float64 [n], parsing it when the header declares it a token ("" -> NaN).

    With `lenient`, tokens that are not plain numbers become NaN (logged) instead of a `DataError`:
    MovieLens-100K has release years "unkonwn" (item 267) and "V" (item 1412).
    """
    values = atomic.columns[name]
    if atomic.field_types[name] == "float":
        return values
    if atomic.field_types[name] != "token":
        raise DataError(f"{atomic.source}: column '{name}' is {atomic.field_types[name]}, expected a number")
    if lenient:
        numeric = np.asarray([_NUMBER.fullmatch(value) is not None for value in values], dtype=bool)
        bad = np.flatnonzero(~numeric & (values != ""))
        if bad.size:
            logger.warning(
                "%s: %d non-numeric values in column '%s' read as missing, e.g. %r",
                atomic.source,
                bad.size,
                name,
                values[bad[:3]].tolist(),
            )
            values = np.where(numeric, values, "")
    return strings_to_float(values, atomic.source, name)


def age_buckets(ages: np.ndarray) -> np.ndarray:
    """MovieLens-1M style age groups (under18, 18-24, ..., 56+) of ages [n]; NaN -> ""."""
    labels = np.asarray(AGE_BUCKETS, dtype=object)[np.digitize(np.nan_to_num(ages, nan=0.0), AGE_EDGES)]
    return np.where(np.isnan(ages), "", labels).astype(object)


def decades(years: np.ndarray) -> np.ndarray:
    """Decade labels such as "1990s" of years [n]; NaN -> ""."""
    return object_array((f"{int(year) // 10 * 10}s" if year == year else "" for year in years), len(years))


def _users(atomic: AtomicFile) -> FeatureTable:
    _require(atomic, "user_id", "age", "gender", "occupation", "zip_code")
    ages = _numeric(atomic, "age").astype(np.float32)
    zips = atomic.columns["zip_code"]
    columns = {
        "age": ages,
        "age_bucket": age_buckets(ages),
        "gender": atomic.columns["gender"],
        "occupation": atomic.columns["occupation"],
        "zip_prefix": object_array((code[:1] for code in zips), len(zips)),
    }
    kinds = {name: ColumnKind.CATEGORICAL for name in columns}
    kinds["age"] = ColumnKind.NUMERIC
    return FeatureTable("user_id", atomic.columns["user_id"], columns, kinds, atomic.source)


def _items(atomic: AtomicFile) -> FeatureTable:
    _require(atomic, "item_id", "movie_title", "release_year", "class")
    titles = atomic.columns["movie_title"]
    years = _numeric(atomic, "release_year", lenient=True)
    columns = {
        "movie_title": object_array((" ".join(title) for title in titles), len(titles)),
        "release_year": years.astype(np.float32),
        "decade": decades(years),
        "genres": atomic.columns["class"],
    }
    kinds = {
        "movie_title": ColumnKind.CATEGORICAL,
        "release_year": ColumnKind.NUMERIC,
        "decade": ColumnKind.CATEGORICAL,
        "genres": ColumnKind.MULTI_CATEGORICAL,
    }
    return FeatureTable("item_id", atomic.columns["item_id"], columns, kinds, atomic.source)
