"""Run outputs: metrics.json, a PNG of loss and validation recall per epoch, and a Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from model.training.trainer import write_atomic


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(metrics, indent=2, sort_keys=True))


def plot_history(history: list[dict[str, float]], path: Path, eval_k: int) -> None:
    """Training loss and validation Recall@K per epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [row["loss"] for row in history], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="sampled softmax loss")
    right.plot(epochs, [row[f"val_recall@{eval_k}"] for row in history], marker="o", color="tab:green")
    right.set(title=f"validation Recall@{eval_k} (full catalog)", xlabel="epoch", ylabel="recall")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def summary_markdown(metrics: dict[str, Any]) -> str:
    """A short human summary of a run."""
    test = metrics["test"]
    ks = test["ks"]
    lines = [
        f"# Training run: {metrics['model_name']}",
        "",
        f"- data: {metrics['data']['source']} — {metrics['data']['train']} train / "
        f"{metrics['data']['validation']} validation / {metrics['data']['test']} test interactions, "
        f"{metrics['data']['items']} items, {metrics['data']['users']} users",
        f"- best epoch {metrics['training']['best_epoch']} of {metrics['training']['epochs_done']} "
        f"(early stop: {metrics['training']['stopped_early']}), {metrics['training']['seconds']:.1f} s, "
        f"{metrics['training']['examples_per_second']:.0f} examples/s",
        f"- bundle: {metrics.get('bundle') or 'not exported'}",
        "",
        "Test, full catalog, exact top-K, random tie-breaking:",
        "",
        "| model | exclusion | " + " | ".join(f"R@{k} | N@{k} | MRR@{k}" for k in ks) + " |",
        "|---|---|" + "---|" * (3 * len(ks)),
    ]
    for who in ("model", "popularity"):
        for variant in ("excluding_train", "including_train"):
            row = test[who][variant]
            cells = " | ".join(f"{row[f'recall@{k}']:.4f} | {row[f'ndcg@{k}']:.4f} | {row[f'mrr@{k}']:.4f}" for k in ks)
            lines.append(f"| {who} | {variant.replace('_', ' ')} | {cells} |")
    return "\n".join(lines) + "\n"
