"""`retrieval-train`: train a two-tower (or sequential) retrieval model, evaluate it on the full catalog and
export a bundle to models/<name>/<version>/.

Settings come from the defaults below, then a TOML file (--config run.toml, tables [data], [model], [train],
[sequence], [export]), then the flags (--section.field VALUE), the last one winning. The defaults are the
recipe the MovieLens benchmark chose on validation (docs/benchmarks/movielens_two_tower.md).

examples:
  retrieval-train --data.source synthetic --train.epochs 3
  retrieval-train --data.source files --data.interactions log.parquet --data.weight_col rating
  retrieval-train --model.tower sequential --sequence.encoder transformer --sequence.objective causal
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.console import (
    EXIT_OK,
    EXIT_STATUS_HELP,
    CommandParser,
    UsageError,
    add_standard_flags,
    import_tensorflow_quietly,
    quiet_tensorflow,
    run_command,
)
from model.logs import LOG_FORMATS, configure_logging
from model.training.config import RunConfig, apply_overrides, build_config, field_paths, load_toml
from model.training.flags import add_config_flags

PROG = "retrieval-train"
# Text log lines as retrieval-train has always written them ("<time> INFO model.training.trainer: epoch 1 ...").
TRAIN_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog=PROG,
        usage="%(prog)s [--config FILE] [--resume] [--section.field VALUE ...]",
        description=__doc__,
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_standard_flags(parser)
    parser.add_argument("--config", type=Path, help="TOML file with [data], [model], [train], [sequence], [export]")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output_dir (default runs/latest) from its last checkpoint, with the "
        "config.json saved there unless --config is given",
    )
    parser.add_argument(
        "--log-format", default="text", choices=LOG_FORMATS,
        help="text lines, or one JSON object per line (as retrieval-serve --log-format json)",
    )  # fmt: skip
    add_config_flags(parser)
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The run's config from the defaults, the TOML file (or a resumed run's config.json) and the flags."""
    values = vars(args)
    overrides: dict[str, Any] = {path: values[path] for path in field_paths() if values[path] is not None}
    base: dict[str, Any] = {}
    try:
        if args.config:
            base = load_toml(args.config)
        elif args.resume:
            saved = Path(overrides.get("output_dir", "runs/latest")) / "config.json"
            if saved.exists():
                base = json.loads(saved.read_text())
        config: RunConfig = build_config(apply_overrides(base, overrides))
        return config
    except OSError as error:
        raise UsageError(f"--config {error.filename}: {error.strerror or error}") from error
    except (ValueError, TypeError) as error:
        where = f"{args.config}: " if args.config else ""
        raise UsageError(f"{where}{error}") from error


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    configure_logging("INFO", args.log_format, text_format=TRAIN_TEXT_FORMAT)

    def train() -> int:
        config = resolve_config(args)
        import_tensorflow_quietly()
        from model.training.job import run

        result = run(config, resume=args.resume)
        print((result.run_dir / "summary.md").read_text())
        print(f"outputs in {result.run_dir}")
        return EXIT_OK

    return run_command(PROG, train, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
