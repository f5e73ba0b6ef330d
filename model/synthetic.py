"""Synthetic interaction logs with planted structure, for tests and the embedded demo.

Users and items belong to latent clusters; items have power-law popularity. A user mostly interacts
with popular items of their own cluster, so a model that learns the clusters beats the popularity
baseline by a wide margin, and one that learns nothing does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.data import ColumnKind, FeatureTable, InteractionLog


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of the synthetic world.

    Attributes:
        num_users: users in the log.
        num_items: items in the catalog.
        num_clusters: latent clusters shared by users and items.
        interactions_per_user: events per user.
        in_cluster_probability: chance that an event picks an item of the user's own cluster.
        segment_accuracy: chance that a user's observable `segment` feature equals their cluster.
        zipf_exponent: item popularity ∝ 1 / rank ** zipf_exponent.
        seed: random seed.
    """

    num_users: int = 2000
    num_items: int = 1000
    num_clusters: int = 20
    interactions_per_user: int = 20
    in_cluster_probability: float = 0.8
    segment_accuracy: float = 0.7
    zipf_exponent: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class SyntheticData:
    """A generated world. Internal ids are positions in `user_ids` / `item_ids`.

    Attributes:
        user_ids: [num_users] external user ids.
        user_segment: [num_users] observable, noisy cluster label of each user.
        user_cluster: [num_users] true cluster.
        item_ids: [num_items] external item ids.
        item_category: [num_items] cluster label of each item (observable).
        users: [n] internal user id of each interaction, grouped by user, in time order.
        items: [n] internal item id of each interaction.
        timestamps: [n] float64 event times.
    """

    user_ids: np.ndarray
    user_segment: np.ndarray
    user_cluster: np.ndarray
    item_ids: np.ndarray
    item_category: np.ndarray
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray


def make_synthetic(config: SyntheticConfig = SyntheticConfig()) -> SyntheticData:
    """Generates a log with planted cluster structure and power-law popularity."""
    rng = np.random.default_rng(config.seed)
    c = config.num_clusters
    user_cluster = rng.integers(0, c, size=config.num_users)
    item_cluster = rng.integers(0, c, size=config.num_items)
    weight = 1.0 / np.power(rng.permutation(config.num_items) + 1.0, config.zipf_exponent)

    global_p = weight / weight.sum()
    cluster_p = np.zeros((c, config.num_items))
    for k in range(c):
        members = item_cluster == k
        if members.any():
            cluster_p[k, members] = weight[members] / weight[members].sum()
        else:
            cluster_p[k] = global_p

    per_user = config.interactions_per_user
    users = np.repeat(np.arange(config.num_users), per_user)
    in_cluster = rng.random(users.size) < config.in_cluster_probability
    items = np.empty(users.size, dtype=np.int64)
    items[~in_cluster] = rng.choice(config.num_items, size=int((~in_cluster).sum()), p=global_p)
    for k in range(c):
        rows = in_cluster & (user_cluster[users] == k)
        items[rows] = rng.choice(config.num_items, size=int(rows.sum()), p=cluster_p[k])
    timestamps = (np.tile(np.arange(per_user), config.num_users) + rng.random(users.size) * 0.5).astype(np.float64)
    timestamps += 1_600_000_000.0

    noisy = rng.random(config.num_users) >= config.segment_accuracy
    segment = np.where(noisy, rng.integers(0, c, size=config.num_users), user_cluster)
    return SyntheticData(
        user_ids=np.array([f"u{i}" for i in range(config.num_users)], dtype=object),
        user_segment=np.array([f"s{s}" for s in segment], dtype=object),
        user_cluster=user_cluster,
        item_ids=np.array([f"i{i}" for i in range(config.num_items)], dtype=object),
        item_category=np.array([f"c{k}" for k in item_cluster], dtype=object),
        users=users.astype(np.int64),
        items=items,
        timestamps=timestamps,
    )


def synthetic_tables(data: SyntheticData) -> tuple[InteractionLog, FeatureTable, FeatureTable]:
    """The synthetic world as an interaction log plus user and item side-feature tables."""
    log = InteractionLog(
        user_ids=data.user_ids[data.users],
        item_ids=data.item_ids[data.items],
        timestamps=data.timestamps,
        weights=np.ones(len(data.users), np.float32),
        source="synthetic",
    )
    users = FeatureTable(
        key="user_id",
        ids=data.user_ids,
        columns={"segment": data.user_segment},
        kinds={"segment": ColumnKind.CATEGORICAL},
        source="synthetic users",
    )
    items = FeatureTable(
        key="item_id",
        ids=data.item_ids,
        columns={"category": data.item_category},
        kinds={"category": ColumnKind.CATEGORICAL},
        source="synthetic items",
    )
    return log, users, items
