"""`retrieval-catalog`: refresh a bundle's catalog from a new item table without retraining."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from model.console import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_STATUS_HELP,
    CommandParser,
    add_standard_flags,
    import_tensorflow_quietly,
    quiet_tensorflow,
    run_command,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog="retrieval-catalog",
        description="Embed a new item table with a bundle's item tower, rebuild its index and write the next "
        "version of the model (same query tower) atomically, with lineage in its manifest.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_standard_flags(parser)
    parser.add_argument("bundle", type=Path, help="the parent version directory, models/<name>/<version>/")
    parser.add_argument("items", type=Path, help="the new item table (.parquet, .csv or .tsv): the whole catalog")
    parser.add_argument(
        "--new-version", type=int, default=None, metavar="N", help="the version to write (none: latest + 1)"
    )
    parser.add_argument("--batch-size", type=int, default=8192, help="items per item-tower call")
    parser.add_argument("--recall-queries", type=int, default=1000, help="queries of the index recall check")
    parser.add_argument("--seed", type=int, default=0, help="seed of the recall check's query sample")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_tensorflow()
    return run_command("retrieval-catalog", lambda: refresh(args), debug=args.debug)


def refresh(args: argparse.Namespace) -> int:
    """Writes the refreshed version and prints one summary line; a bundle or table that does not fit is one
    line naming the file and column, and nothing is written (exit 1)."""
    import_tensorflow_quietly()
    from model.bundle.reader import BundleError
    from model.catalog_refresh import refresh_catalog
    from model.catalog_table import CatalogTableError

    try:
        result = refresh_catalog(
            args.bundle,
            args.items,
            version=args.new_version,
            batch_size=args.batch_size,
            recall_queries=args.recall_queries,
            seed=args.seed,
        )
    except (BundleError, CatalogTableError, FileExistsError) as error:
        print(f"retrieval-catalog: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    lineage = result.lineage
    print(
        f"wrote {result.path}: parent version {lineage['parent_version']}, {lineage['items_added']} added, "
        f"{lineage['items_removed']} removed, {lineage['items_changed']} changed, "
        f"index {lineage['index_quantizer']}, {result.seconds['total']:.1f} s"
    )
    print(json.dumps({k: round(v, 3) for k, v in result.seconds.items()}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
