"""Quality benchmark: the two-tower on MovieLens-100K under the leave-last-out, full-catalog protocol.

Hyperparameters are chosen on validation Recall@10 only; the chosen configuration is then trained once more
and its test metrics are reported once. Writes docs/benchmarks/movielens_two_tower.{json,md}.

    python bench/train_movielens.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

from model.training.config import build_config
from model.training.job import run

OUT = Path("docs/benchmarks")

# The grid searched on validation: temperature, sampler and logQ are the choices that matter on this protocol.
GRID: list[dict[str, Any]] = [
    {"model": {"temperature": t, "logq_correction": logq, "sampler": sampler}}
    for t in (0.05, 0.1, 0.2)
    for logq in (True,)
    for sampler in ("in-batch", "mixed")
] + [{"model": {"temperature": 0.1, "logq_correction": False, "sampler": "in-batch"}}]


def _config(overrides: dict[str, Any], output_dir: Path, epochs: int) -> Any:
    values: dict[str, Any] = {
        "data": {"source": "movielens-100k"},
        "train": {"epochs": epochs, "patience": 3, "verbose": 0, "seed": 42},
        "export": {"enabled": False},
        "output_dir": str(output_dir),
    }
    for section, fields in overrides.items():
        values.setdefault(section, {}).update(fields)
    return build_config(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="search only the first two grid points")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-movielens"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    grid = GRID[:2] if args.quick else GRID

    search = []
    for i, overrides in enumerate(grid):
        result = run(_config(overrides, args.work_dir / f"search-{i}", args.epochs))
        best = max(row["val_recall@10"] for row in result.metrics["training"]["history"])
        search.append({"overrides": overrides, "validation_recall@10": best})
        print(f"[{i + 1}/{len(grid)}] {overrides} -> validation Recall@10 {best:.4f}", flush=True)
    chosen = max(search, key=lambda row: row["validation_recall@10"])

    started = time.perf_counter()
    final = run(_config(chosen["overrides"], args.work_dir / "final", args.epochs))
    seconds = time.perf_counter() - started
    test = final.metrics["test"]
    report = {
        "command": "python " + " ".join(["bench/train_movielens.py", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "protocol": "MovieLens-100K, leave-last-out by time, all ratings as positives, full catalog, exact top-K, "
        "every item the user interacted with before the test item excluded",
        "search": search,
        "chosen": chosen,
        "test": test,
        "training": {k: v for k, v in final.metrics["training"].items() if k != "history"},
        "wall_seconds": seconds,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "movielens_two_tower.json").write_text(json.dumps(report, indent=2))
    (OUT / "movielens_two_tower.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _markdown(report: dict[str, Any]) -> str:
    test = report["test"]
    rows = []
    for who in ("model", "popularity"):
        for variant in ("excluding_train", "including_train"):
            m = test[who][variant]
            rows.append(
                f"| {who} | {variant.replace('_', ' ')} | "
                + " | ".join(
                    f"{m[f'recall@{k}']:.4f} | {m[f'ndcg@{k}']:.4f} | {m[f'mrr@{k}']:.4f}" for k in (10, 50, 100)
                )
                + " |"
            )
    search = "\n".join(
        f"| `{json.dumps(row['overrides']['model'])}` | {row['validation_recall@10']:.4f} |" for row in report["search"]
    )
    training = report["training"]
    return f"""## Two-tower on MovieLens-100K

Command: `{report["command"]}` — {report["machine"]["platform"]}, Python {report["machine"]["python"]}.

Protocol: {report["protocol"]}.

Hyperparameter search (validation Recall@10 only):

| model overrides | validation Recall@10 |
|---|---|
{search}

Test (reported once, chosen configuration `{json.dumps(report["chosen"]["overrides"]["model"])}`):

| model | exclusion | R@10 | N@10 | MRR@10 | R@50 | N@50 | MRR@50 | R@100 | N@100 | MRR@100 |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Training: best epoch {training["best_epoch"]} of {training["epochs_done"]}, {training["seconds"]:.1f} s,
{training["examples_per_second"]:.0f} examples/s.
"""


if __name__ == "__main__":
    sys.exit(main())
