"""Optional push of a run's headline metrics to a Prometheus Pushgateway."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

logger = logging.getLogger(__name__)

JOB = "retrieval_train"


def push_run_metrics(url: str, model_name: str, metrics: dict[str, Any], *, timeout: float = 10.0) -> None:
    """Pushes examples/s, final loss, test Recall@K and duration of a finished run, grouped by model name.

    Failures are logged, not raised: a monitoring outage must not fail a training run that succeeded.
    """
    registry = CollectorRegistry()
    training = metrics["training"]
    history = training.get("history") or []
    Gauge("retrieval_train_examples_per_second", "Training throughput.", registry=registry).set(
        training["examples_per_second"]
    )
    Gauge("retrieval_train_seconds", "Wall time of the training loop.", registry=registry).set(training["seconds"])
    Gauge("retrieval_train_epochs", "Epochs completed.", registry=registry).set(training["epochs_done"])
    if history:
        Gauge("retrieval_train_loss", "Training loss of the last epoch.", registry=registry).set(history[-1]["loss"])
    recall = Gauge("retrieval_train_test_recall", "Test Recall@K, full catalog.", ["k", "exclusion"], registry=registry)
    for variant in ("excluding_train", "including_train"):
        for k in metrics["test"]["ks"]:
            recall.labels(k=str(k), exclusion=variant).set(metrics["test"]["model"][variant][f"recall@{k}"])
    try:
        push_to_gateway(url, job=JOB, grouping_key={"model": model_name}, registry=registry, timeout=timeout)
        logger.info("pushed training metrics to %s", url)
    except OSError as err:
        logger.error("could not push training metrics to %s: %s", url, err)
