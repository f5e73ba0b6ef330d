"""`retrieval-train`: the training job's command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from model.training.config import apply_overrides, build_config, field_paths, load_toml


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="retrieval-train",
        description="Train a two-tower retrieval model, evaluate it on the full catalog and export a bundle.",
    )
    parser.add_argument("--config", type=Path, help="TOML file with [data], [model], [train], [export] tables")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint"
    )
    for path, (_type, default) in field_paths().items():
        parser.add_argument(f"--{path}", dest=path, default=None, metavar="VALUE", help=f"(default: {default})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs every CPU variant it tries
    values = vars(args)
    overrides = {path: values[path] for path in field_paths() if values[path] is not None}
    base = load_toml(args.config) if args.config else {}
    if args.resume and not args.config:
        saved = Path(overrides.get("output_dir", "runs/latest")) / "config.json"
        if saved.exists():
            base = json.loads(saved.read_text())
    try:
        config = build_config(apply_overrides(base, overrides))
    except (ValueError, TypeError) as err:
        print(f"retrieval-train: {err}", file=sys.stderr)
        return 2

    from model.training.job import run

    result = run(config, resume=args.resume)
    print((result.run_dir / "summary.md").read_text())
    print(f"outputs in {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
