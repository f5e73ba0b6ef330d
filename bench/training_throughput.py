"""Training throughput of the two-tower: examples/s and step-time breakdown, jit_compile off and on.

For each dataset (MovieLens-100K; a synthetic log of 1M interactions with planted clusters) and each
`jit_compile` setting, the model is built exactly as `retrieval-train` builds it (`build_model`, default model
config, batch 512) and trained by its own train function, the `tf.function` that `fit` calls (the batch is
taken from the iterator inside the graph, as in `fit`). Per setting:
- wall step: a step over the real `training_dataset` input pipeline;
- model step: the same step over an iterator that repeats one cached batch (no input work at all).
model_step_fraction = model step / wall step; the issue's target is >= 0.9 (the input pipeline, which shares
the cores with the step, costs at most 10%). The two alternate in blocks so machine drift hits both alike. The
input pipeline alone is also timed (batches/s with no model). `jit_compile=True` is passed to `compile` as
`retrieval-train --train.jit_compile true` does; `jit_compile_effective` records what Keras made of it (Keras
turns it off for models with layers that XLA cannot compile, such as `StringLookup`).

    python -m bench.training_throughput [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from bench.report import BENCH_ENV, OUT, command_line, header_markdown, machine, markdown_table, write_json

for _key, _value in BENCH_ENV.items():
    os.environ.setdefault(_key, _value)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from model.data import leave_last_out  # noqa: E402
from model.synthetic import SyntheticConfig, make_synthetic, synthetic_tables  # noqa: E402
from model.training.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from model.training.factory import tower_shape  # noqa: E402
from model.training.job import load_data  # noqa: E402
from model.training.pipeline import training_dataset  # noqa: E402
from model.training.prepare import PreparedData, prepare  # noqa: E402
from model.training.trainer import build_model  # noqa: E402

logger = logging.getLogger(__name__)

SYNTHETIC = {
    "full": SyntheticConfig(num_users=20000, num_items=50000, num_clusters=200, interactions_per_user=50),
    "quick": SyntheticConfig(num_users=4000, num_items=10000, num_clusters=50, interactions_per_user=25),
    "tiny": SyntheticConfig(num_users=300, num_items=500, num_clusters=10, interactions_per_user=10),
}


def prepared(dataset: str, size: str) -> tuple[PreparedData, str]:
    if dataset == "ml-100k":
        log, users, items, display = load_data(DataConfig(source="movielens-100k"))
        label = "MovieLens-100K"
    else:
        config = SYNTHETIC[size]
        log, users, items = synthetic_tables(make_synthetic(config))
        display = None
        label = (
            f"synthetic {len(log) / 1e6:g}M interactions" if len(log) >= 1e6 else f"synthetic {len(log)} interactions"
        )
    shape = tower_shape(ModelConfig())
    data = prepare(log, leave_last_out(log), users=users, items=items, shape=shape, display_column=display)
    return data, label


def input_only(data: PreparedData, batch_size: int, steps: int) -> float:
    """Batches per second of the input pipeline alone."""
    iterator = iter(training_dataset(data.train, data.user_features, batch_size=batch_size, seed=0).repeat())
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps / (time.perf_counter() - start)


def _timed_steps(model: Any, iterator: Any, steps: int) -> list[float]:
    """Seconds per call of the model's own train function (what `fit` calls), each until its loss is on the host."""
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        logs = model.train_function(iterator)
        float(logs["loss"])
        times.append(time.perf_counter() - t0)
    return times


def measure(
    data: PreparedData, jit: bool, batch_size: int, steps: int, warmup_steps: int, rounds: int = 5
) -> dict[str, Any]:
    """Wall step time over the real input pipeline vs model step time over one cached batch, as `fit` runs them.

    Both use the model's own train function (`make_train_function`, the `tf.function` that `fit` calls, with
    the batch taken from the iterator inside the graph). The model step is timed on an iterator that repeats
    one cached batch (no input work); the wall step on the real pipeline. They alternate in `rounds` blocks so
    drift on a shared machine hits both alike. model_step_fraction = model step / wall step.
    """
    train_config = TrainConfig(batch_size=batch_size, jit_compile=jit, verbose=0)
    model = build_model(data, ModelConfig(), train_config)
    if jit and not model.jit_compile:
        # Keras ran jit_compile=True without XLA: the row would time the jit-off model again.
        blocking = sorted({type(layer).__name__ for layer in model._flatten_layers() if not layer.supports_jit})
        return {
            "jit_compile_effective": False,
            "skipped": f"Keras turned jit_compile off: {', '.join(blocking)} cannot be compiled by XLA "
            "(no string kernels), so the model trains exactly as with jit off",
        }
    model.make_train_function()
    dataset = training_dataset(data.train, data.user_features, batch_size=batch_size, seed=0).repeat()
    real = iter(dataset)
    cached = iter(dataset.take(1).cache().repeat())
    started = time.perf_counter()
    try:
        first = _timed_steps(model, real, 1)[0]
        _timed_steps(model, real, warmup_steps)
        _timed_steps(model, cached, warmup_steps)
        wall: list[float] = []
        compute: list[float] = []
        per_round = max(1, steps // rounds)
        for _ in range(rounds):
            wall += _timed_steps(model, real, per_round)
            compute += _timed_steps(model, cached, per_round)
    except (tf.errors.OpError, ValueError, TypeError, NotImplementedError) as error:
        message = str(error).strip().splitlines()
        return {
            "error": f"{type(error).__name__}: {message[0] if message else ''}"[:500],
            "seconds_until_failure": time.perf_counter() - started,
        }
    wall_ms, model_ms = float(np.mean(wall) * 1000), float(np.mean(compute) * 1000)
    return {
        "steps": len(wall),
        "batch_size": batch_size,
        "jit_compile_effective": bool(model.jit_compile),
        "examples_per_second": batch_size / (wall_ms / 1000),
        "wall_ms_per_step": wall_ms,
        "wall_p99_ms": float(np.percentile(wall, 99) * 1000),
        "model_ms_per_step": model_ms,
        "input_ms_per_step": max(0.0, wall_ms - model_ms),
        "model_step_fraction": model_ms / wall_ms,
        "first_step_seconds": first,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller synthetic log, fewer steps")
    parser.add_argument("--tiny", action="store_true", help="smoke-test size (tests/bench)")
    parser.add_argument("--datasets", default="ml-100k,synthetic")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    steps = args.steps or {"full": 300, "quick": 60, "tiny": 5}[size]
    warmup = min(args.warmup_steps, 2) if args.tiny else args.warmup_steps
    info = machine()
    started = time.perf_counter()
    results = []
    for dataset in args.datasets.split(","):
        data, label = prepared(dataset, size)
        batch_size = min(args.batch_size, len(data.train))
        pipeline_bps = input_only(data, batch_size, steps)
        for jit in (False, True):
            row = {
                "dataset": label,
                "train_examples": len(data.train),
                "jit_compile": jit,
                "input_only_batches_per_second": pipeline_bps,
                **measure(data, jit, batch_size, steps, warmup),
            }
            results.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    ok = [r for r in results if "error" not in r and "skipped" not in r]
    report = {
        "command": command_line(),
        "machine": info,
        "mode": size,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "results": results,
        "train_model_step_fraction": min((r["model_step_fraction"] for r in ok), default=float("nan")),
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(args.out_dir / "training_throughput.json", report)
    (args.out_dir / "training_throughput.md").write_text(markdown(report))
    plot(report, args.out_dir / "training_throughput.png")
    return report


def markdown(report: dict[str, Any]) -> str:
    note = (
        f"Mode: **{report['mode']}**; TensorFlow device: {report['device']}. Steps run by the model's own train "
        "function (what `fit` calls). Wall = a step over the real input pipeline; model = the same step over one "
        "cached batch; input = wall - model. model_step_fraction = model / wall is the target figure (≥ 0.9). "
        "jit effective: what Keras made of `jit_compile=True`."
    )
    rows = []
    for r in report["results"]:
        if "error" in r or "skipped" in r:
            outcome = "FAILED" if "error" in r else "not run"
            note = r.get("error") or r["skipped"]
            rows.append(
                [r["dataset"], r["jit_compile"], r.get("jit_compile_effective", "-"), outcome] + ["-"] * 5 + [note]
            )
        else:
            rows.append(
                [
                    r["dataset"],
                    r["jit_compile"],
                    r["jit_compile_effective"],
                    r["examples_per_second"],
                    r["wall_ms_per_step"],
                    r["input_ms_per_step"],
                    r["model_ms_per_step"],
                    r["model_step_fraction"],
                    r["input_only_batches_per_second"],
                    f"first step {r['first_step_seconds']:.1f} s",
                ]
            )
    table = markdown_table(
        [
            "dataset",
            "jit",
            "jit effective",
            "examples/s",
            "wall ms/step",
            "input ms/step",
            "model ms/step",
            "model fraction",
            "input-only batches/s",
            "note",
        ],
        rows,
    )
    return "\n".join(
        [
            header_markdown("Training throughput", report["machine"], report["command"], note),
            table,
            "",
            f"Minimum model step fraction: {report['train_model_step_fraction']:.3f}. "
            f"Wall time {report['wall_seconds']:.0f} s. Raw data: training_throughput.json.",
            "",
        ]
    )


def plot(report: dict[str, Any], path: Path) -> None:
    ok = [r for r in report["results"] if "error" not in r and "skipped" not in r]
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['dataset']}\njit={'on' if r['jit_compile'] else 'off'}" for r in ok]
    model = [r["model_ms_per_step"] for r in ok]
    fetch = [r["input_ms_per_step"] for r in ok]
    ax.bar(labels, model, label="model step")
    ax.bar(labels, fetch, bottom=model, label="input pipeline (wall - model)")
    for i, r in enumerate(ok):
        ax.text(i, model[i] + fetch[i], f"{r['examples_per_second']:.0f} ex/s", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="ms per step", title="two-tower training step time (batch 512)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
