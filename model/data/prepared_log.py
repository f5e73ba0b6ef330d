"""A prepared log on disk: vocabularies, item frequencies and the split's examples as sharded Parquet.

`model.data.log_engine.prepare_log` writes it (with DuckDB) from a log of any size; the trainer reads it
with memory bounded by the vocabularies and the batch size. Layout of the directory:

    prepared.json        format, source files, columns, split, counts, and each train shard's row count
    users.parquet        user_id (string), train_count (int64); row u = internal user id u (sorted ids)
    items.parquet        item_id (string), train_count (int64); row i = internal item id i (sorted ids)
    train/part-NNNNN.parquet   user (int64), item (int64), weight (float32): the training examples, dealt
                         round-robin over the shards, so that shard sizes differ by at most one row
    validation.parquet, test.parquet   the same columns, held-out examples
    sequences/part-NNNNN.parquet   (optional; `retrieval-prepare --sequences`) user (int64), item (int64),
                         validation (bool): every training and validation event, user u's in shard
                         u % len(shards), each shard sorted by user, then time, then file order: the time-ordered
                         histories the sequential tower cuts its windows from (the example shards carry no time)

Any engine (Spark, Ray Data, BigQuery) that writes these files with a `prepared.json` can feed the trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.data.columns import DataError

FORMAT_VERSION = 1
MANIFEST = "prepared.json"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
TRAIN_DIR = "train"
HELD_OUT_FILES = {"validation": "validation.parquet", "test": "test.parquet"}
SEQUENCE_DIR = "sequences"
EXAMPLE_SCHEMA = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("weight", pa.float32())])
SEQUENCE_SCHEMA = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("validation", pa.bool_())])


@dataclass(frozen=True)
class ShardedExamples:
    """Training examples in Parquet shards (columns of `EXAMPLE_SCHEMA`), read as a stream.

    Attributes:
        files: the shards, in order.
        rows: the number of examples in each shard.
        use_weights: train with the weight column; otherwise every example weighs 1.0.
    """

    files: tuple[Path, ...]
    rows: tuple[int, ...]
    use_weights: bool = False

    def __len__(self) -> int:
        return sum(self.rows)


@dataclass(frozen=True)
class HeldOut:
    """Held-out examples in memory: [n] internal user ids, item ids and weights."""

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class PreparedLog:
    """A prepared-log directory, opened (only `prepared.json` is read at once).

    Attributes:
        directory: the directory.
        manifest: the parsed `prepared.json`.
    """

    directory: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, directory: str | Path, *, field: str = "data.prepared") -> PreparedLog:
        """Opens a directory written by `prepare_log`; a missing or foreign file is a `DataError`."""
        directory = Path(directory)
        path = directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(
                f"{field}: {directory}: not a prepared log (no {MANIFEST}; run retrieval-prepare)"
            ) from None
        except json.JSONDecodeError as error:
            raise DataError(f"{field}: {path}: not JSON: {error}") from error
        if manifest.get("format") != FORMAT_VERSION:
            raise DataError(f"{field}: {path}: format {manifest.get('format')!r}, this version reads {FORMAT_VERSION}")
        shards = [*manifest["train_shards"], *manifest.get("sequence_shards", [])]
        for name in (USERS_FILE, ITEMS_FILE, *HELD_OUT_FILES.values(), *(s["path"] for s in shards)):
            if not (directory / name).is_file():
                raise DataError(f"{field}: {directory}: {name} is missing")
        return cls(directory, manifest)

    @property
    def counts(self) -> dict[str, int]:
        """interactions, users, items, train, validation and test."""
        return dict(self.manifest["counts"])

    def vocabulary(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """External ids [n] (object array of str, sorted; row = internal id) and train counts [n] of "user"/"item"."""
        table = pq.read_table(self.directory / (USERS_FILE if side == "user" else ITEMS_FILE))
        ids = np.asarray(table.column(0).to_numpy(zero_copy_only=False), dtype=object)
        return ids, table.column("train_count").to_numpy().astype(np.int64)

    def train_examples(self, *, use_weights: bool = False) -> ShardedExamples:
        shards = self.manifest["train_shards"]
        return ShardedExamples(
            files=tuple(self.directory / s["path"] for s in shards),
            rows=tuple(int(s["rows"]) for s in shards),
            use_weights=use_weights,
        )

    def sequence_files(self, *, field: str = "data.prepared") -> tuple[Path, ...]:
        """The time-ordered event shards (user u's events in shard u % len); a log prepared without them is a
        `DataError` naming `field`."""
        shards = self.manifest.get("sequence_shards")
        if not shards:
            raise DataError(
                f"{field}: {self.directory} has no time-ordered sequences (the sequential tower needs them); "
                "prepare it again with retrieval-prepare --sequences"
            )
        return tuple(self.directory / s["path"] for s in shards)

    def held_out(self, part: str, *, limit: int = 0, seed: int = 0) -> HeldOut:
        """The validation or test examples; with `limit` > 0, a seeded sample of at most `limit` of them.

        Reads in record batches and keeps only the sampled rows: memory is bounded by `limit`.
        """
        file = pq.ParquetFile(self.directory / HELD_OUT_FILES[part])
        total = file.metadata.num_rows
        keep = None
        if 0 < limit < total:
            keep = np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))
        parts: list[pa.RecordBatch] = []
        start = 0
        for batch in file.iter_batches(batch_size=65536):
            if keep is None:
                parts.append(batch)
            else:
                inside = keep[(keep >= start) & (keep < start + batch.num_rows)] - start
                parts.append(batch.take(pa.array(inside)))
            start += batch.num_rows
        table = pa.Table.from_batches(parts) if parts else EXAMPLE_SCHEMA.empty_table()
        return HeldOut(
            users=table.column("user").to_numpy(),
            items=table.column("item").to_numpy(),
            weights=table.column("weight").to_numpy().astype(np.float32),
        )

    def histories(self, users: np.ndarray, parts: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) pairs [k] of the given users in the given parts ("train", "validation"), in one scan.

        Memory is bounded by those users' histories, not by the log.
        """
        wanted = pa.array(np.unique(users).astype(np.int64))
        files = [self.directory / HELD_OUT_FILES[p] for p in parts if p != "train"]
        if "train" in parts:
            files += list(self.train_examples().files)
        found_users: list[np.ndarray] = []
        found_items: list[np.ndarray] = []
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=262144, columns=["user", "item"]):
                mask = pc.is_in(batch.column(0), value_set=wanted)
                picked = batch.filter(mask)
                found_users.append(picked.column(0).to_numpy())
                found_items.append(picked.column(1).to_numpy())
        if not found_users:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(found_users).astype(np.int64), np.concatenate(found_items).astype(np.int64)
