"""Turns an interaction log, side-feature tables and a split into tower specs, a catalog and id arrays."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from model.bundle.reserved import USER_ID_FEATURE
from model.catalog import ItemCatalog
from model.data import ColumnKind, FeatureTable, InteractionLog, Split
from model.data.prepared_log import ShardedExamples
from model.evaluation import Exclusions
from model.features import CategoricalFeature, EmbeddingDimRule, Feature, NumericFeature, TowerSpec

logger = logging.getLogger(__name__)

MAX_MULTI_VALUES = 8


@dataclass(frozen=True)
class TowerShape:
    """Sizes shared by both towers (their specs are derived from the data)."""

    hidden_units: tuple[int, ...] = (128,)
    output_dim: int = 64
    dropout: float = 0.0
    l2_normalize: bool = False
    embedding_rule: EmbeddingDimRule = field(default_factory=EmbeddingDimRule)


@dataclass(frozen=True)
class Examples:
    """Positive (user, item) pairs as internal row ids.

    Attributes:
        users: [n] row into `PreparedData.user_features`.
        items: [n] internal item id (catalog row).
        weights: [n] float32 sample weights.
    """

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True, eq=False)
class PreparedData:
    """Everything the trainer and the evaluator need, in internal ids.

    Attributes:
        query_spec: the query tower's features and sizes.
        item_spec: the item tower's features and sizes.
        catalog: every retrievable item; row i = internal id i.
        user_ids: [U] external user ids; row u of `user_features` describes user_ids[u].
        user_features: raw query-tower inputs per user, [U] or [U, n].
        train: training pairs: in memory, or in Parquet shards read as a stream (`model.training.streaming_data`).
        validation: held-out pairs for model selection.
        test: held-out pairs reported once.
        validation_exclusions: per validation pair, the items the user saw before it.
        test_exclusions: per test pair, the items the user saw before it (train + validation).
    """

    query_spec: TowerSpec
    item_spec: TowerSpec
    catalog: ItemCatalog
    user_ids: np.ndarray
    user_features: dict[str, np.ndarray]
    train: Examples | ShardedExamples
    validation: Examples
    test: Examples
    validation_exclusions: Exclusions
    test_exclusions: Exclusions


def _table_features(table: FeatureTable | None, ids: np.ndarray) -> tuple[list[Feature], dict[str, np.ndarray]]:
    """Specs and aligned raw values of a side-feature table's columns for the given ids."""
    if table is None:
        return [], {}
    rows = table.lookup(ids)
    features: list[Feature] = []
    values: dict[str, np.ndarray] = {}
    for name, kind in table.kinds.items():
        column = rows[name]
        if kind is ColumnKind.NUMERIC:
            finite = column[np.isfinite(column)]
            mean = float(finite.mean()) if finite.size else 0.0
            std = float(finite.std()) if finite.size and finite.std() > 0 else 1.0
            features.append(NumericFeature(name, mean=mean, std=std))
            values[name] = column.astype(np.float32)
        elif kind is ColumnKind.CATEGORICAL:
            features.append(CategoricalFeature(name, table.vocabulary(name)))
            values[name] = column.astype(str)
        else:
            width = max(1, min(MAX_MULTI_VALUES, max((len(v) for v in column), default=1)))
            padded = np.full((len(column), width), "", dtype=object)
            for i, tokens in enumerate(column):
                padded[i, : min(width, len(tokens))] = tokens[:width]
            features.append(CategoricalFeature(name, table.vocabulary(name), max_values=width))
            values[name] = padded.astype(str)
    return features, values


def _spec(name: str, features: list[Feature], shape: TowerShape) -> TowerSpec:
    return TowerSpec(
        name,
        tuple(features),
        hidden_units=shape.hidden_units,
        output_dim=shape.output_dim,
        dropout=shape.dropout,
        l2_normalize=shape.l2_normalize,
        embedding_rule=shape.embedding_rule,
    )


def _exclusions(before: Examples, queries: Examples, num_users: int) -> Exclusions:
    """For each query pair, the items its user interacted with in `before`."""
    per_user = Exclusions.from_pairs(before.users, before.items, num_users)
    indptr = [0]
    indices: list[np.ndarray] = []
    for user in queries.users.tolist():
        row = per_user.row(user)
        indices.append(row)
        indptr.append(indptr[-1] + len(row))
    flat = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(queries)), np.diff(indptr))
    return Exclusions.from_pairs(rows, flat, len(queries))


def sample_queries(data: PreparedData, limit: int, seed: int) -> PreparedData:
    """`data` with at most `limit` validation and test queries each (a seeded sample; 0 = all), their
    exclusions kept row for row."""

    def sampled(examples: Examples, exclusions: Exclusions, offset: int) -> tuple[Examples, Exclusions]:
        if limit <= 0 or len(examples) <= limit:
            return examples, exclusions
        keep = np.sort(np.random.default_rng(seed + offset).choice(len(examples), size=limit, replace=False))
        rows = [exclusions.row(int(i)) for i in keep]
        flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        query_rows = np.repeat(np.arange(len(keep)), [len(r) for r in rows])
        picked = Examples(examples.users[keep], examples.items[keep], examples.weights[keep])
        return picked, Exclusions.from_pairs(query_rows, flat, len(keep))

    validation, validation_exclusions = sampled(data.validation, data.validation_exclusions, 0)
    test, test_exclusions = sampled(data.test, data.test_exclusions, 1)
    return dataclasses.replace(
        data,
        validation=validation,
        test=test,
        validation_exclusions=validation_exclusions,
        test_exclusions=test_exclusions,
    )


def prepare(
    log: InteractionLog,
    split: Split,
    *,
    users: FeatureTable | None = None,
    items: FeatureTable | None = None,
    shape: TowerShape = TowerShape(),
    use_weights: bool = False,
    display_column: str | None = None,
) -> PreparedData:
    """Builds specs, catalog and internal-id examples; vocabularies come from the training split only."""
    train_log = log.take(split.train)
    item_ids = np.unique(np.concatenate([log.item_ids, items.ids if items is not None else np.array([], object)]))
    user_ids = np.unique(log.user_ids)
    item_index = {item: i for i, item in enumerate(item_ids.tolist())}
    user_index = {user: u for u, user in enumerate(user_ids.tolist())}

    def examples(indices: np.ndarray) -> Examples:
        part = log.take(indices)
        weights = part.weights if use_weights else np.ones(len(part), np.float32)
        return Examples(
            users=np.array([user_index[u] for u in part.user_ids.tolist()], np.int64),
            items=np.array([item_index[i] for i in part.item_ids.tolist()], np.int64),
            weights=weights.astype(np.float32),
        )

    train, validation, test = examples(split.train), examples(split.validation), examples(split.test)
    logger.info(
        "prepared data users=%d items=%d train=%d validation=%d test=%d",
        len(user_ids),
        len(item_ids),
        len(train),
        len(validation),
        len(test),
    )
    return assemble(
        user_ids=user_ids,
        item_ids=item_ids,
        item_counts=np.bincount(train.items, minlength=len(item_ids)).astype(np.int64),
        trained_users=np.unique(train_log.user_ids),
        trained_items=np.unique(train_log.item_ids),
        users=users,
        items=items,
        shape=shape,
        display_column=display_column,
        train=train,
        validation=validation,
        test=test,
        seen_before_validation=train,
        seen_before_test=joined(train, validation),
    )


def joined(first: Examples, second: Examples) -> Examples:
    """The examples of `first` followed by those of `second`."""
    return Examples(
        np.concatenate([first.users, second.users]),
        np.concatenate([first.items, second.items]),
        np.concatenate([first.weights, second.weights]),
    )


def assemble(
    *,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    item_counts: np.ndarray,
    trained_users: np.ndarray,
    trained_items: np.ndarray,
    users: FeatureTable | None,
    items: FeatureTable | None,
    shape: TowerShape,
    display_column: str | None,
    train: Examples | ShardedExamples,
    validation: Examples,
    test: Examples,
    seen_before_validation: Examples,
    seen_before_test: Examples,
) -> PreparedData:
    """PreparedData of the in-memory and the streaming paths, from their vocabularies and examples: the tower
    specs (id vocabularies of the training split, side features of the tables), the catalog (every id, training
    counts as popularity, the display column apart), the user features (ids first) and each held-out part's
    exclusions from what its users were seen with before it.

    Args:
        user_ids, item_ids: every id, sorted (row = internal id).
        item_counts: [len(item_ids)] training events per item.
        trained_users, trained_items: the ids seen in training (the towers' vocabularies).
    """
    user_side, user_values = _table_features(users, user_ids)
    item_side, item_values = _table_features(items, item_ids)
    if display_column is not None and display_column in item_values:
        item_side = [f for f in item_side if f.name != display_column]
    query_spec = _spec("query", [CategoricalFeature(USER_ID_FEATURE, tuple(trained_users.tolist())), *user_side], shape)
    item_spec = _spec("item", [CategoricalFeature("item_id", tuple(trained_items.tolist())), *item_side], shape)
    display = {display_column: item_values.pop(display_column)} if display_column in item_values else {}
    catalog = ItemCatalog(
        external_ids=item_ids,
        features={"item_id": item_ids.astype(str), **item_values},
        popularity=item_counts,
        display=display,
    )
    return PreparedData(
        query_spec=query_spec,
        item_spec=item_spec,
        catalog=catalog,
        user_ids=user_ids,
        user_features={USER_ID_FEATURE: user_ids.astype(str), **user_values},
        train=train,
        validation=validation,
        test=test,
        validation_exclusions=_exclusions(seen_before_validation, validation, len(user_ids)),
        test_exclusions=_exclusions(seen_before_test, test, len(user_ids)),
    )
