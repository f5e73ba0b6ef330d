"""Runs every performance benchmark and writes docs/benchmarks/summary.json (the issue's headline figures).

    python -m bench.run_all            # full: 100k and 1M catalogs, 1M-interaction log (about 30-45 min on 2 cores)
    python -m bench.run_all --quick    # 10k catalog, small log, short phases (about 6-10 min on 2 cores)

Writes serving.{json,md,png}, flat_search.{json,md} (on the largest Flat bundle), training_throughput.{json,md,png}
and summary.json into `--out-dir`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench import flat_search, serving, training_throughput
from bench.report import OUT, command_line, device_label, write_json

SUMMARY_KEYS = (
    "service_over_ceiling",
    "batching_speedup_c64",
    "p99_over_p50_half_load",
    "ann_speedup_vs_flat",
    "ann_recall_at_100",
    "train_model_step_fraction",
    "device",
    "command",
)


def summary(serving_report: dict[str, Any], training_report: dict[str, Any], command: str) -> dict[str, Any]:
    """Exactly the issue's keys, as plain numbers (plus device and command)."""
    h = serving_report["headline"]
    data = {
        "service_over_ceiling": h["service_over_ceiling"],
        "batching_speedup_c64": h["batching_speedup_c64"],
        "p99_over_p50_half_load": h["p99_over_p50_half_load"],
        "ann_speedup_vs_flat": h["ann_speedup_vs_flat"],
        "ann_recall_at_100": h["ann_recall_at_100"],
        "train_model_step_fraction": training_report["train_model_step_fraction"],
        "device": device_label(serving_report["machine"]),
        "command": command,
    }
    assert tuple(data) == SUMMARY_KEYS
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="smoke-test size (tests/bench)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--work-dir", type=Path, default=None, help="serving bundles and logs (cached between runs)")
    args = parser.parse_args(argv)
    size = ["--tiny"] if args.tiny else ["--quick"] if args.quick else []
    common = ["--out-dir", str(args.out_dir)]
    serving_args = [*size, *common] + (["--work-dir", str(args.work_dir)] if args.work_dir else [])
    if args.tiny:
        serving_args += ["--concurrency", "1,8", "--batching-concurrency", "8"]
    serving_report = serving.main(serving_args)
    work_dir = args.work_dir or Path(f"runs/bench-serving-{'tiny' if args.tiny else 'quick' if args.quick else 'full'}")
    flat = max((b for b in serving_report["bundles"] if b["kind"] == "flat"), key=lambda b: b["num_items"])
    seconds = ["--seconds", "0.5"] if args.tiny else ["--seconds", "2"] if args.quick else []
    flat_search.main(["--bundle", str(work_dir / "models" / flat["model_name"] / "1"), *seconds, *common])
    training_report = training_throughput.main([*size, *common])
    data = summary(serving_report, training_report, command_line())
    write_json(args.out_dir / "summary.json", data)
    for key, value in data.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
