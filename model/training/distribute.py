"""tf.distribute strategies: one device, all local GPUs (mirrored), or several hosts (multi-worker via TF_CONFIG)."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi-worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy named by `train.strategy`.

    Create it before any other TensorFlow op runs: multi-worker collectives are configured at start-up.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("train.strategy = 'multi-worker' needs the TF_CONFIG environment variable")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        workers = strategy.cluster_resolver.cluster_spec().num_tasks("worker")
        logger.info(
            "multi-worker strategy: %d workers, %d replicas in sync, this is worker %d",
            workers,
            strategy.num_replicas_in_sync,
            worker_index(),
        )
        return strategy
    raise ValueError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")


def worker_index() -> int:
    """This process's worker index from TF_CONFIG (0, the chief, when not distributed)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    return int(task.get("index", 0)) if task.get("type", "worker") in ("worker", "chief") else 0


def is_chief() -> bool:
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    if task.get("type") == "chief":
        return True
    has_chief = "chief" in config.get("cluster", {})
    return not has_chief and worker_index() == 0
