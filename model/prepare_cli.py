"""`retrieval-prepare`: split a sharded Parquet log, count its vocabularies and item frequencies, and write the
training examples as sharded Parquet, with DuckDB and bounded memory. `retrieval-train --data.prepared DIR`
trains from the result.

examples:
  retrieval-prepare --interactions 'logs/*.parquet' --output prepared/ --shards 16
  retrieval-prepare --interactions logs/ --output prepared-seq/ --sequences   # for the sequential tower
  retrieval-prepare --interactions logs/ --split time --validation-cutoff 1.7e9 --test-cutoff 1.71e9 \\
      --output prepared/ --memory-limit 4GB
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from model.console import EXIT_OK, EXIT_STATUS_HELP, CommandParser, UsageError, add_standard_flags, run_command

PROG = "retrieval-prepare"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog=PROG,
        description=__doc__,
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_standard_flags(parser)
    parser.add_argument("--interactions", required=True, help="the log: a Parquet file, a directory of them, or a glob")
    parser.add_argument("--output", required=True, type=Path, help="the directory to write (must not exist)")
    parser.add_argument("--user-col", default="user_id", help="user id column (default: %(default)s)")
    parser.add_argument("--item-col", default="item_id", help="item id column (default: %(default)s)")
    parser.add_argument("--time-col", default="timestamp", help="timestamp column (default: %(default)s)")
    parser.add_argument("--weight-col", default="", help="optional weight or rating column")
    parser.add_argument("--split", choices=("leave-last-out", "time"), default="leave-last-out")
    parser.add_argument("--validation-cutoff", type=float, default=0.0, help="first validation time (--split time)")
    parser.add_argument("--test-cutoff", type=float, default=0.0, help="first test time (--split time)")
    parser.add_argument(
        "--refit-on-validation",
        action="store_true",
        help="validation events join the training examples (for a run with data.refit_on_validation)",
    )
    parser.add_argument(
        "--items", default="", help="item side table (Parquet file, directory or glob): its ids join the catalog"
    )
    parser.add_argument("--item-key", default="", help="id column of --items (default: --item-col)")
    parser.add_argument(
        "--shards", type=int, default=8, help="training example files; a multiple of the training workers"
    )
    parser.add_argument(
        "--sequences",
        action="store_true",
        help="also write time-ordered per-user sequences (needed to train model.tower = sequential)",
    )
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB's memory limit; it spills beyond it")
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = all cores)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(PROG, lambda: prepare(args), debug=args.debug)


def prepare(args: argparse.Namespace) -> int:
    """Writes the prepared log and prints its counts as one JSON line."""
    from model.data.log_preparation import LogColumns, SplitRule, prepare_log
    from model.data.parquet_files import resolve_parquet_files

    try:
        split = SplitRule(args.split, args.validation_cutoff, args.test_cutoff, refit=args.refit_on_validation)
    except ValueError as error:
        raise UsageError(f"--validation-cutoff/--test-cutoff: {error}") from error
    files = resolve_parquet_files(args.interactions, field="--interactions")
    item_table = None
    if args.items:
        item_table = (resolve_parquet_files(args.items, field="--items"), args.item_key or args.item_col)
    prepared = prepare_log(
        files,
        args.output,
        columns=LogColumns(args.user_col, args.item_col, args.time_col, args.weight_col),
        split=split,
        item_table=item_table,
        shards=args.shards,
        sequences=args.sequences,
        memory_limit=args.memory_limit,
        threads=args.threads,
        field="--interactions",
    )
    print(f"wrote {prepared.directory} from {len(files)} files: {json.dumps(prepared.counts)}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
