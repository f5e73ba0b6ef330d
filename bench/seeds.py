"""Seeded retraining of a chosen configuration: reuse of finished runs and mean ± std ± standard error.

A run directory whose `metrics.json` exists and whose `config.json` equals the configuration asked for is
read back instead of trained again, so an interrupted benchmark resumes at the first unfinished seed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.training.config import RunConfig, to_dict
from model.training.job import run

logger = logging.getLogger(__name__)


def run_or_reuse(config: RunConfig) -> dict[str, Any]:
    """The run's metrics.json: read back when the run directory holds a finished run of `config`."""
    run_dir = Path(config.output_dir)
    metrics, saved = run_dir / "metrics.json", run_dir / "config.json"
    if metrics.exists() and saved.exists() and json.loads(saved.read_text()) == json.loads(json.dumps(to_dict(config))):
        logger.warning("reusing the finished run %s", run_dir)
        result: dict[str, Any] = json.loads(metrics.read_text())
        return result
    return run(config).metrics  # not the result: it holds the model


def seed_row(metrics: dict[str, Any], seed: int) -> dict[str, Any]:
    """One seed's validation (best epoch) and test metrics (every earlier item of the user excluded)."""
    training = metrics["training"]
    best = training["history"][training["best_epoch"] - 1]
    return {
        "seed": seed,
        "validation": {"recall@10": best["val_recall@10"], "ndcg@10": best["val_ndcg@10"]},
        "test": metrics["test"]["model"]["excluding_train"],
        "best_epoch": training["best_epoch"],
        "epochs_done": training["epochs_done"],
        "training_seconds": training["seconds"],
    }


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1) and standard error of the mean of `values` (n >= 1)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "se": std / math.sqrt(n), "n": n}


def summarize(rows: list[dict[str, Any]], metrics: Sequence[str] = ("recall@10", "ndcg@10")) -> dict[str, Any]:
    """Per split ("validation", "test") and metric, `mean_std` over the seeds' rows."""
    return {
        split: {name: mean_std([row[split][name] for row in rows]) for name in metrics}
        for split in ("validation", "test")
    }


def _cells(validation: dict[str, float], test: dict[str, float]) -> str:
    return " | ".join(f"{m['recall@10']:.4f} | {m['ndcg@10']:.4f}" for m in (validation, test))


def _spread(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f} (SE {stat['se']:.4f})"


def table_markdown(models: dict[str, dict[str, Any]], baselines: dict[str, Any]) -> str:
    """Validation and test Recall@10 / NDCG@10: every seed, the seeds' mean ± std (SE), then the baselines.

    Args:
        models: per model label, `{"seeds": [seed_row(...)], "summary": summarize(...)}`.
        baselines: `classical_baselines(...)`'s report.
    """
    lines = [
        "| model | val R@10 | val N@10 | test R@10 | test N@10 | best epoch |",
        "|---|---|---|---|---|---|",
    ]
    for label, model in models.items():
        for row in model["seeds"]:
            lines.append(
                f"| {label}, seed {row['seed']} | {_cells(row['validation'], row['test'])} | "
                f"{row['best_epoch']} of {row['epochs_done']} |"
            )
        summary = model["summary"]
        cells = " | ".join(
            _spread(summary[split][metric]) for split in ("validation", "test") for metric in ("recall@10", "ndcg@10")
        )
        lines.append(f"| **{label}, mean of {summary['test']['recall@10']['n']} seeds** | {cells} | |")
    labels = {
        "popularity": "popularity",
        "ease": "EASE, λ = {l2:g}",
        "transition": "item-to-item transitions, smoothing {smoothing:g}",
        "mix": "mix of EASE (weight {ease_weight:g}) and transitions ({rest:g})",
    }
    for name, template in labels.items():
        result = baselines[name]
        label = template.format(**result, rest=round(1 - result.get("ease_weight", 0), 2))
        lines.append(f"| {label} | {_cells(result['validation'], result['test'])} | |")
    return "\n".join(lines)


def grid_markdown(baselines: dict[str, Any]) -> str:
    """Each baseline grid value's validation and test Recall@10 (the test column chose nothing)."""
    lines = ["| baseline | value | val R@10 | test R@10 | gap |", "|---|---|---|---|---|"]
    for name in ("ease", "transition", "mix"):
        for row in baselines[name]["grid"]:
            validation, test = row["validation"]["recall@10"], row["test"]["recall@10"]
            lines.append(f"| {name} | {row['value']:g} | {validation:.4f} | {test:.4f} | {validation - test:+.4f} |")
    return "\n".join(lines)


def leak_markdown(checks: dict[str, Any]) -> str:
    """The leak checks, one bullet each."""
    return "\n".join(f"- {name.replace('_', ' ')}: {value}" for name, value in checks.items())
