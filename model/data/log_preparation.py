"""Prepares a log larger than memory with DuckDB: the split, vocabularies, item frequencies, sharded examples.

Why DuckDB here and pyarrow elsewhere: these steps are a group-by (per-user last events, per-id counts) and
hash joins (the held-out keys and the vocabularies joined back to the log). DuckDB runs them over Parquet
files as a query engine with a memory limit, spilling its hash tables and sorts to disk, so memory is bounded
by its `memory_limit`, not by the log; a hand-written pyarrow pass would have to keep every user's events
(for leave-last-out) or every distinct id with a counter in Python. The training input itself is a plain scan
of record batches and stays with pyarrow (`model.training.streaming`).

- leave-last-out: one GROUP BY user picks each user's last two events (`max_by(.., 2)` ordered by time, then
  file order) and their count; a join of the log with those keys labels every event. Only the keys, two
  per user, are held in memory.
- time split: a filter on the timestamp, in the same streaming scan.
- vocabularies: GROUP BY id with the training count (the item frequencies), sorted by id: row = internal id.
- examples: the log joined with both vocabularies, streamed out in record batches and dealt round-robin to
  `shards` Parquet files (sizes differ by at most one row), so that workers reading disjoint files see
  equal shares.
- sequences (optional): the training and validation events ordered by user, time and file order (DuckDB's
  external sort, which spills beyond its memory limit), streamed out and dealt to `shards` files by user id,
  so that each user's history is contiguous and in time order inside one file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.data.columns import DataError
from model.data.prepared_log import (
    EXAMPLE_SCHEMA,
    FORMAT_VERSION,
    HELD_OUT_FILES,
    ITEMS_FILE,
    MANIFEST,
    SEQUENCE_DIR,
    SEQUENCE_SCHEMA,
    TRAIN_DIR,
    USERS_FILE,
    PreparedLog,
)

logger = logging.getLogger(__name__)

STREAM_BATCH_ROWS = 131072


@dataclass(frozen=True)
class LogColumns:
    """Column names of the log; `weight` = "" means every event weighs 1.0."""

    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"
    weight: str = ""


@dataclass(frozen=True)
class SplitRule:
    """How events are held out (see `model.data.split` for the in-memory equivalents).

    `refit`: the validation events join the training examples and the validation part is empty, as
    `data.refit_on_validation` does in memory (`refit_split`). It is decided here, before the vocabularies and
    item counts, so that they count those events as training events, exactly as the in-memory refit does;
    the prepared log records it (prepared.json "split"), and a run asking for a refit checks it.
    """

    kind: Literal["leave-last-out", "time"] = "leave-last-out"
    validation_cutoff: float = 0.0
    test_cutoff: float = 0.0
    min_interactions: int = 3
    refit: bool = False

    def __post_init__(self) -> None:
        if self.kind == "time" and not self.validation_cutoff < self.test_cutoff:
            raise ValueError(
                f"cutoffs must increase: validation_cutoff={self.validation_cutoff} < test_cutoff={self.test_cutoff}"
            )
        if self.kind == "leave-last-out" and self.min_interactions < 2:
            raise ValueError(f"min_interactions must be at least 2, got {self.min_interactions}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _file_list(files: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def _run(con: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    """Runs a statement to its end (DuckDB keeps an unfinished result open until it is fetched)."""
    return con.execute(sql).fetchall()


def _described(con: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    cursor = con.execute(sql)
    description = list(cursor.description or [])
    cursor.fetchall()
    return description


def _connect(memory_limit: str, temp_dir: Path, threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": str(temp_dir)})
    if threads > 0:
        _run(con, f"SET threads = {int(threads)}")
    return con


def _time_expression(con: duckdb.DuckDBPyConnection, files: str, column: str, field: str) -> str:
    description = _described(con, f"SELECT {_quote(column)} FROM read_parquet({files}) LIMIT 0")
    kind = str(description[0][1]).upper()
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return f"epoch({_quote(column)})"
    numeric = ("INTEGER", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT", "DOUBLE", "FLOAT", "DECIMAL", "UINTEGER")
    if kind.startswith(numeric) or kind.startswith("U"):
        return f"CAST({_quote(column)} AS DOUBLE)"
    raise DataError(f"{field}: column '{column}' has type {kind}, expected numbers or timestamps")


def _define_log(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path], columns: LogColumns, field: str
) -> dict[str, int]:
    """Creates the view `log(user_id, item_id, t, w, f, r)` and checks its values in one scan."""
    listed = _file_list(files)
    try:
        found = [d[0] for d in _described(con, f"SELECT * FROM read_parquet({listed}) LIMIT 0")]
    except duckdb.Error as error:
        raise DataError(f"{field}: not readable as Parquet: {error}") from error
    wanted = [columns.user, columns.item, columns.time] + ([columns.weight] if columns.weight else [])
    missing = [c for c in wanted if c not in found]
    if missing:
        raise DataError(f"{field}: {files[0]}: missing column(s) {missing}; columns found: {found}")
    weight = f"CAST({_quote(columns.weight)} AS FLOAT)" if columns.weight else "CAST(1.0 AS FLOAT)"
    _run(
        con,
        f"""CREATE VIEW log AS SELECT
            CAST({_quote(columns.user)} AS VARCHAR) AS user_id, CAST({_quote(columns.item)} AS VARCHAR) AS item_id,
            {_time_expression(con, listed, columns.time, field)} AS t, {weight} AS w,
            filename AS f, file_row_number AS r
        FROM read_parquet({listed}, filename = true, file_row_number = true)""",
    )
    row = con.execute(
        """SELECT count(*),
            count(*) FILTER (user_id IS NULL OR user_id = ''), count(*) FILTER (item_id IS NULL OR item_id = ''),
            count(*) FILTER (t IS NULL OR isnan(t)), count(*) FILTER (w IS NULL OR isnan(w))
        FROM log"""
    ).fetchall()[0]
    total, *bad = (int(v) for v in row)
    if total == 0:
        raise DataError(f"{field}: no rows")
    for (name, kind), count in zip(
        ((columns.user, "null or empty ids"), (columns.item, "null or empty ids"), (columns.time, "null times"),
         (columns.weight, "null weights")),
        bad,
        strict=True,
    ):  # fmt: skip
        if count:
            raise DataError(f"{field}: column '{name}' has {count} {kind}")
    return {"interactions": total}


def _define_split(con: duckdb.DuckDBPyConnection, rule: SplitRule) -> None:
    """Creates the view `labelled` = log + `part` ('train', 'validation' or 'test'; no 'validation' with a refit)."""
    _define_parts(con, rule)
    held_part = "'train'" if rule.refit else "'validation'"
    _run(
        con,
        f"CREATE VIEW labelled AS SELECT * REPLACE (CASE WHEN part = 'validation' THEN {held_part} ELSE part END "
        "AS part) FROM parts",
    )


def _define_parts(con: duckdb.DuckDBPyConnection, rule: SplitRule) -> None:
    """Creates the view `parts` = log + the part the rule gives each event."""
    if rule.kind == "time":
        _run(
            con,
            f"""CREATE VIEW parts AS SELECT *, CASE WHEN t < {float(rule.validation_cutoff)!r} THEN 'train'
                WHEN t < {float(rule.test_cutoff)!r} THEN 'validation' ELSE 'test' END AS part FROM log""",
        )
        return
    # The engine's group-by: each user's two latest events (time, then file order) and the event count.
    _run(
        con,
        f"""CREATE TEMP TABLE held AS
        WITH last AS (
            SELECT count(*) AS n, max_by(struct_pack(f := f, r := r), struct_pack(t := t, f := f, r := r), 2) AS two
            FROM log GROUP BY user_id)
        SELECT two[1].f AS f, two[1].r AS r, 'test' AS part FROM last WHERE n >= {int(rule.min_interactions)}
        UNION ALL
        SELECT two[2].f AS f, two[2].r AS r, 'validation' AS part FROM last WHERE n >= {int(rule.min_interactions)}""",
    )
    _run(
        con,
        "CREATE VIEW parts AS SELECT log.*, coalesce(held.part, 'train') AS part FROM log LEFT JOIN held USING (f, r)",
    )


def _write_vocabularies(
    con: duckdb.DuckDBPyConnection, out: Path, item_table: tuple[Sequence[Path], str] | None
) -> dict[str, int]:
    _run(
        con,
        """CREATE TEMP TABLE users AS SELECT user_id, train_count, row_number() OVER (ORDER BY user_id) - 1 AS id
        FROM (SELECT user_id, count(*) FILTER (part = 'train') AS train_count FROM labelled GROUP BY user_id)""",
    )
    extra = ""
    if item_table is not None:
        files, key = item_table
        extra = f"UNION ALL SELECT CAST({_quote(key)} AS VARCHAR), 0 FROM read_parquet({_file_list(files)})"
    _run(
        con,
        f"""CREATE TEMP TABLE items AS SELECT item_id, train_count, row_number() OVER (ORDER BY item_id) - 1 AS id
        FROM (SELECT item_id, sum(n)::BIGINT AS train_count FROM (
              SELECT item_id, (part = 'train')::BIGINT AS n FROM labelled {extra}) GROUP BY item_id)""",
    )
    for table, name in (("users", USERS_FILE), ("items", ITEMS_FILE)):
        key = "user_id" if table == "users" else "item_id"
        _run(con, f"COPY (SELECT {key}, train_count FROM {table} ORDER BY id) TO '{out / name}' (FORMAT parquet)")
    counts = {}
    for table in ("users", "items"):
        row = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
        counts[table] = int(row[0])
    return counts


_EXAMPLES = """SELECT users.id AS "user", items.id AS item, w AS weight
    FROM labelled JOIN users USING (user_id) JOIN items USING (item_id) WHERE part = '{part}'"""


def _write_shards(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    out: Path,
    directory: str,
    schema: pa.Schema,
    shards: int,
    shard_of: Callable[[pa.RecordBatch, int], np.ndarray],
) -> list[dict[str, Any]]:
    """Streams the rows of `sql` (cast to `schema`) into `shards` Parquet files under `directory`, each row to
    the file `shard_of(batch, rows before the batch)` gives it, keeping the stream's order inside each file."""
    (out / directory).mkdir()
    names = [f"{directory}/part-{k:05d}.parquet" for k in range(shards)]
    writers = [pq.ParquetWriter(out / name, schema) for name in names]
    rows = [0] * shards
    seen = 0
    try:
        for batch in con.sql(sql).to_arrow_reader(STREAM_BATCH_ROWS):
            batch = pa.RecordBatch.from_arrays(
                [batch.column(i).cast(schema.field(i).type) for i in range(len(schema))], schema=schema
            )
            shard = shard_of(batch, seen)
            seen += batch.num_rows
            for k in range(shards):
                take = np.flatnonzero(shard == k)
                if take.size:
                    writers[k].write_batch(batch.take(pa.array(take)))
                    rows[k] += int(take.size)
    finally:
        for writer in writers:
            writer.close()
    return [{"path": name, "rows": count} for name, count in zip(names, rows, strict=True)]


_SEQUENCE_EVENTS = """SELECT users.id AS "user", items.id AS item, part = 'validation' AS validation
    FROM labelled JOIN users USING (user_id) JOIN items USING (item_id) WHERE part <> 'test'
    ORDER BY "user", t, f, r"""


def _write_train_shards(con: duckdb.DuckDBPyConnection, out: Path, shards: int) -> list[dict[str, Any]]:
    """Streams the training examples into `shards` files, row i of the stream to shard i % shards."""
    return _write_shards(
        con, _EXAMPLES.format(part="train"), out, TRAIN_DIR, EXAMPLE_SCHEMA, shards,
        lambda batch, seen: (seen + np.arange(batch.num_rows)) % shards,
    )  # fmt: skip


def _write_sequence_shards(con: duckdb.DuckDBPyConnection, out: Path, shards: int) -> list[dict[str, Any]]:
    """Streams the training and validation events, sorted by user and time, into `shards` files by user id."""
    return _write_shards(
        con, _SEQUENCE_EVENTS, out, SEQUENCE_DIR, SEQUENCE_SCHEMA, shards,
        lambda batch, _seen: batch.column(0).to_numpy() % shards,
    )  # fmt: skip


def prepare_log(
    files: Sequence[Path],
    output: str | Path,
    *,
    columns: LogColumns = LogColumns(),
    split: SplitRule = SplitRule(),
    item_table: tuple[Sequence[Path], str] | None = None,
    shards: int = 8,
    sequences: bool = False,
    memory_limit: str = "1GB",
    threads: int = 0,
    field: str = "data.interactions",
) -> PreparedLog:
    """Writes a prepared log (see `model.data.prepared_log`) for the Parquet `files` into `output`.

    Args:
        files: the log's Parquet files, in file order (`resolve_parquet_files`).
        output: the directory to create; it is written beside itself and renamed, so it appears whole.
        columns: the log's column names.
        split: leave-last-out or a time split.
        item_table: Parquet files and key column of the item side table: its ids join the item vocabulary
            (retrievable, never trained on) as in the in-memory path.
        shards: number of training example files (a multiple of the number of training workers), and of
            sequence files.
        sequences: also write the time-ordered sequence shards the sequential tower trains from.
        memory_limit: DuckDB's memory limit; beyond it, DuckDB spills to a temporary directory.
        threads: DuckDB threads (0 = all cores).
        field: the config field or flag that named `files`, for messages.

    Returns:
        The prepared log, opened.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output}: already exists (a prepared log is written once; choose a new directory)")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        with _connect(memory_limit, staging / ".spill", threads) as con:
            counts = _define_log(con, files, columns, field)
            _define_split(con, split)
            counts.update(_write_vocabularies(con, staging, item_table))
            train_shards = _write_train_shards(con, staging, shards)
            sequence_shards = _write_sequence_shards(con, staging, shards) if sequences else []
            for part, name in HELD_OUT_FILES.items():
                _run(
                    con,
                    f"COPY ({_EXAMPLES.format(part=part)} ORDER BY \"user\", item) TO '{staging / name}' "
                    "(FORMAT parquet)",
                )
                held = pq.ParquetFile(staging / name).metadata.num_rows
                counts[part] = int(held)
        shutil.rmtree(staging / ".spill", ignore_errors=True)
        counts["train"] = sum(s["rows"] for s in train_shards)
        manifest = {
            "format": FORMAT_VERSION,
            "source": [str(f) for f in files],
            "columns": asdict(columns),
            "split": asdict(split),
            "counts": {"interactions": counts["interactions"], "users": counts["users"], "items": counts["items"],
                       "train": counts["train"], "validation": counts["validation"], "test": counts["test"]},
            "train_shards": train_shards,
            **({"sequence_shards": sequence_shards} if sequences else {}),
        }  # fmt: skip
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("prepared log %s: %s", output, json.dumps(manifest["counts"]))
    return PreparedLog.open(output)
