"""Classical baselines scored like the models: EASE, item-to-item transitions, their mix, popularity.

Each baseline's one hyperparameter (EASE's λ, the transitions' smoothing, the mix weight) is chosen on the
validation queries' Recall@10 from a small grid; the chosen baseline is then scored once on the test
queries. Every score matrix goes through `evaluate_query_scores`: the same exact top-K, exclusions and
tie-breaking as the models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.evaluation.blend import blend_scores
from model.evaluation.ease import ease_scores, fit_ease, interaction_matrix
from model.evaluation.evaluate import evaluate_query_scores, evaluate_scores, popularity_scores
from model.evaluation.exclusions import Exclusions
from model.evaluation.transition import consecutive_pairs, transition_probabilities, transition_scores

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Events:
    """The interactions the baselines are fitted on, in internal ids.

    Attributes:
        users: [n] user row.
        items: [n] item id.
        timestamps: [n] event time (orders each user's transitions; ties keep input order).
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray


@dataclass(frozen=True, eq=False)
class Queries:
    """One split's queries, as the models see them.

    Attributes:
        histories: per query, the items its user saw before the target; scored as the history and excluded.
        last_items: [Q] the item just before the target, -1 if none.
        targets: [Q] the held-out item.
    """

    histories: Exclusions
    last_items: np.ndarray
    targets: np.ndarray


@dataclass(frozen=True)
class Grids:
    """The validation grids of the baselines' hyperparameters."""

    l2: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0)
    smoothing: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    weight: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True, eq=False)
class _Choice:
    value: float
    validation: dict[str, float]
    test: dict[str, float]
    scores: tuple[FloatArray, FloatArray]  # validation, test
    grid: list[dict[str, Any]]


def _choose(
    grid: Sequence[float],
    scores: Callable[[float], tuple[FloatArray, FloatArray]],
    validation: Queries,
    test: Queries,
    choose_on: str,
    **options: Any,
) -> _Choice:
    """The grid value of best validation `choose_on` (the first on ties).

    Every grid value's test metrics are recorded too, as a diagnostic of the validation/test gap; they
    choose nothing.
    """
    best: _Choice | None = None
    rows = []
    for value in grid:
        validation_scores, test_scores = scores(value)
        on_validation = evaluate_query_scores(
            validation_scores, validation.targets, exclude=validation.histories, **options
        )
        on_test = evaluate_query_scores(test_scores, test.targets, exclude=test.histories, **options)
        rows.append({"value": value, "validation": on_validation, "test": on_test})
        if best is None or on_validation[choose_on] > best.validation[choose_on]:
            best = _Choice(value, on_validation, on_test, (validation_scores, test_scores), rows)
    if best is None:
        raise ValueError("a baseline grid must be non-empty")
    return best


def _histories(queries: Queries, num_items: int) -> FloatArray:
    rows, items = queries.histories.slice_pairs(0, queries.histories.num_queries)
    return interaction_matrix(rows, items, queries.histories.num_queries, num_items)


def classical_baselines(
    fit: Events,
    num_users: int,
    num_items: int,
    validation: Queries,
    test: Queries,
    *,
    grids: Grids = Grids(),
    ks: Sequence[int] = (10, 50, 100),
    choose_on: str = "recall@10",
    seed: int = 0,
) -> dict[str, Any]:
    """Fits each baseline on `fit`, chooses it on `validation` and scores it on `test`.

    Args:
        fit: the interactions the baselines learn from (the models' training interactions).
        num_users: user rows of `fit`.
        num_items: catalog size N.
        validation: the queries the hyperparameters are chosen on.
        test: the queries reported once.
        grids: the hyperparameter grids.
        ks: cutoffs of the metrics.
        choose_on: the validation metric that chooses (one of the metrics at `ks`).
        seed: seed of the random tie-breaking.

    Returns:
        Per baseline ("popularity", "ease", "transition", "mix"): its chosen hyperparameter (if any), its
        "validation" and "test" metrics (each query's earlier items excluded) and, for a chosen one, the
        "grid" of every value's validation and test metrics.
    """
    options: dict[str, Any] = {"ks": ks, "seed": seed}
    counts = np.bincount(np.asarray(fit.items, dtype=np.int64), minlength=num_items)
    prior = counts / max(int(counts.sum()), 1)
    report: dict[str, Any] = {
        "popularity": {
            split: evaluate_scores(popularity_scores(counts), q.targets, exclude=q.histories, **options)
            for split, q in (("validation", validation), ("test", test))
        }
    }
    interactions = interaction_matrix(fit.users, fit.items, num_users, num_items)
    histories = (_histories(validation, num_items), _histories(test, num_items))

    def ease(l2: float) -> tuple[FloatArray, FloatArray]:
        weights = fit_ease(interactions, l2)
        return ease_scores(histories[0], weights), ease_scores(histories[1], weights)

    previous, following = consecutive_pairs(fit.users, fit.items, fit.timestamps)

    def transition(smoothing: float) -> tuple[FloatArray, FloatArray]:
        table = transition_probabilities(previous, following, prior, smoothing)
        return (
            transition_scores(validation.last_items, table, prior),
            transition_scores(test.last_items, table, prior),
        )

    chosen = {}
    for name, parameter, grid, scores in (
        ("ease", "l2", grids.l2, ease),
        ("transition", "smoothing", grids.smoothing, transition),
    ):
        choice = _choose(grid, scores, validation, test, choose_on, **options)
        chosen[name] = choice.scores
        report[name] = {parameter: choice.value, "validation": choice.validation, "test": choice.test}
        report[name]["grid"] = choice.grid
        logger.info(
            "baseline %s %s=%s validation %s=%.4f",
            name,
            parameter,
            choice.value,
            choose_on,
            choice.validation[choose_on],
        )

    def mix(weight: float) -> tuple[FloatArray, FloatArray]:
        return (
            blend_scores(chosen["ease"][0], chosen["transition"][0], weight),
            blend_scores(chosen["ease"][1], chosen["transition"][1], weight),
        )

    choice = _choose(grids.weight, mix, validation, test, choose_on, **options)
    report["mix"] = {
        "ease_weight": choice.value,
        "validation": choice.validation,
        "test": choice.test,
        "grid": choice.grid,
    }
    return report
