"""How fast each console script answers `--help` and `--version` (TensorFlow is imported only by the work).

Runs `python -m <module> --help` and `--version` of every console script `--repeats` times in fresh
interpreters and records the median and slowest wall time, next to `python -c "import tensorflow"` for scale.
Writes docs/benchmarks/cli_startup.json and cli_startup.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import OUT, command_line, header_markdown, machine, markdown_table, write_json

SCRIPTS = {
    "retrieval-train": "model.cli",
    "retrieval-serve": "service.cli",
    "retrieval-query": "service.query_cli",
    "retrieval-demo": "apps.demo",
}


def wall_times(argv: list[str], repeats: int) -> list[float]:
    """Seconds each of `repeats` runs of `argv` took, start to exit; a failing run is an error."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def measure(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for prog, module in SCRIPTS.items():
        for flag in ("--help", "--version"):
            seconds = wall_times([sys.executable, "-m", module, flag], repeats)
            rows.append({"command": f"{prog} {flag}", "median_s": statistics.median(seconds), "max_s": max(seconds)})
    seconds = wall_times([sys.executable, "-c", "import tensorflow"], max(1, repeats // 2))
    rows.append(
        {"command": 'python -c "import tensorflow"', "median_s": statistics.median(seconds), "max_s": max(seconds)}
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command")
    parser.add_argument("--out", type=Path, default=OUT, help="output directory")
    args = parser.parse_args(argv)
    info = machine()
    rows = measure(args.repeats)
    command = command_line()
    write_json(
        args.out / "cli_startup.json", {"command": command, "machine": info, "repeats": args.repeats, "rows": rows}
    )
    table = markdown_table(
        ["command", "median s", "slowest s"], [[r["command"], r["median_s"], r["max_s"]] for r in rows]
    )
    note = (
        f"Fresh interpreters (`python -m <module>`), {args.repeats} runs each; the last row is what every `--help` "
        "cost while the console scripts imported TensorFlow at start-up."
    )
    (args.out / "cli_startup.md").write_text(
        header_markdown("Console scripts: --help and --version latency", info, command, note) + table + "\n"
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
