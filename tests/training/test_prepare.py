import numpy as np

from model.data import ColumnKind, FeatureTable, InteractionLog, leave_last_out
from model.features import CategoricalFeature, NumericFeature
from model.training.pipeline import training_dataset
from model.training.prepare import Examples, prepare, sample_queries


def _log():
    # user a: i1 (t=1), i2 (t=2), i3 (t=3), i4 (t=4); user b: i2, i5, i1 (t=1..3)
    return InteractionLog(
        user_ids=["a", "a", "a", "a", "b", "b", "b"],
        item_ids=["i1", "i2", "i3", "i4", "i2", "i5", "i1"],
        timestamps=[1, 2, 3, 4, 1, 2, 3],
        weights=[5, 4, 3, 2, 1, 1, 1],
    )


def _tables():
    users = FeatureTable(
        "user_id", np.array(["a", "b"], object), {"age": np.array([20.0, 40.0], "float32")}, {"age": ColumnKind.NUMERIC}
    )
    items = FeatureTable(
        "item_id",
        np.array(["i1", "i2", "i3", "i4", "i5", "i6"], object),
        {
            "genres": np.array([("x",), ("x", "y"), (), ("y",), ("z",), ("x",)], object),
            "title": np.array(["T1", "T2", "T3", "T4", "T5", "T6"], object),
        },
        {"genres": ColumnKind.MULTI_CATEGORICAL, "title": ColumnKind.CATEGORICAL},
    )
    return users, items


def test_prepare_builds_specs_catalog_and_no_leakage():
    log = _log()
    users, items = _tables()
    data = prepare(log, leave_last_out(log), users=users, items=items, display_column="title")
    ids = data.catalog.external_ids.tolist()
    assert ids == ["i1", "i2", "i3", "i4", "i5", "i6"]  # i6 only in the item table: still retrievable
    # train = a:i1,i2 and b:i2; validation = a:i3, b:i5; test = a:i4, b:i1
    assert sorted(ids[i] for i in data.train.items) == ["i1", "i2", "i2"]
    assert [ids[i] for i in data.test.items] == ["i4", "i1"]
    item_vocab = data.item_spec.feature("item_id")
    assert isinstance(item_vocab, CategoricalFeature)
    assert item_vocab.vocabulary == ("i1", "i2")  # vocabularies come from the training split only
    assert data.query_spec.feature("age") == NumericFeature("age", mean=30.0, std=10.0)
    genres = data.item_spec.feature("genres")
    assert isinstance(genres, CategoricalFeature) and genres.max_values == 2
    assert "title" not in [f.name for f in data.item_spec.features]
    assert data.catalog.display["title"].tolist() == ["T1", "T2", "T3", "T4", "T5", "T6"]
    np.testing.assert_array_equal(data.catalog.popularity, [1, 2, 0, 0, 0, 0])
    # everything each user saw before the held-out item is excluded, and nothing else
    assert sorted(ids[i] for i in data.test_exclusions.row(0)) == ["i1", "i2", "i3"]  # user a
    assert sorted(ids[i] for i in data.test_exclusions.row(1)) == ["i2", "i5"]  # user b
    assert sorted(ids[i] for i in data.validation_exclusions.row(0)) == ["i1", "i2"]
    assert np.all(data.train.weights == 1.0)


def test_pipeline_batches_gather_user_features():
    log = _log()
    users, items = _tables()
    data = prepare(log, leave_last_out(log), users=users, items=items, use_weights=True)
    batches = list(training_dataset(data.train, data.user_features, batch_size=2, seed=0, shuffle=False))
    features, item_ids, weights = batches[0]
    assert item_ids.shape == (2,)
    assert features["user_id"].numpy().tolist() == [b"a", b"a"]
    np.testing.assert_allclose(features["age"].numpy(), [20.0, 20.0])
    np.testing.assert_allclose(weights.numpy(), [5.0, 4.0])
    assert sum(int(b[1].shape[0]) for b in batches) == len(data.train)


def test_shuffled_pipeline_visits_every_example_once_per_epoch_in_a_new_seeded_order():
    rng = np.random.default_rng(0)
    n, batch_size = 103, 10
    examples = Examples(
        users=rng.integers(0, 7, n).astype(np.int64),
        items=np.arange(n, dtype=np.int64),  # item id = example row, so batches show which rows they hold
        weights=np.ones(n, dtype=np.float32),
    )
    user_features = {"user_id": np.array([f"u{i}" for i in range(7)]), "age": np.arange(7, dtype=np.float32)}

    def epochs(seed: int, count: int) -> list[list[int]]:
        dataset = training_dataset(examples, user_features, batch_size=batch_size, seed=seed)
        assert int(dataset.cardinality()) == n // batch_size  # known to Keras: it counts the epoch's steps
        out = []
        for _ in range(count):  # Keras iterates the dataset afresh every epoch
            rows = []
            for features, items, _ in dataset:
                assert items.shape == (batch_size,)  # the last partial batch is dropped
                expected_users = examples.users[items.numpy()]
                assert features["user_id"].numpy().tolist() == [f"u{u}".encode() for u in expected_users]
                np.testing.assert_allclose(features["age"].numpy(), expected_users)
                rows += items.numpy().tolist()
            assert len(rows) == len(set(rows)) == (n // batch_size) * batch_size
            out.append(rows)
        return out

    first, second = epochs(seed=1, count=2)
    assert first != second  # reshuffled every epoch
    assert epochs(seed=1, count=2) == [first, second]  # and repeatable from the seed
    assert epochs(seed=2, count=1)[0] != first


def test_fewer_examples_than_a_batch_make_one_batch():
    examples = Examples(users=np.zeros(3, np.int64), items=np.arange(3, dtype=np.int64), weights=np.ones(3, np.float32))
    batches = list(training_dataset(examples, {"user_id": np.array(["u0"])}, batch_size=8, seed=0))
    assert len(batches) == 1 and sorted(batches[0][1].numpy().tolist()) == [0, 1, 2]


def test_sample_queries_keeps_each_sampled_query_with_its_own_exclusions():
    log = InteractionLog(
        user_ids=[u for u in "abcdef" for _ in range(4)],
        item_ids=[f"i{(3 * k + j) % 9}" for k in range(6) for j in range(4)],
        timestamps=list(range(4)) * 6,
        weights=[1.0] * 24,
    )
    data = prepare(log, leave_last_out(log))
    sampled = sample_queries(data, limit=2, seed=0)
    assert len(sampled.validation) == len(sampled.test) == 2 and len(data.test) == 6
    for part, exclusions, full, full_exclusions in (
        (sampled.test, sampled.test_exclusions, data.test, data.test_exclusions),
        (sampled.validation, sampled.validation_exclusions, data.validation, data.validation_exclusions),
    ):
        for row, user in enumerate(part.users.tolist()):
            original = full.users.tolist().index(user)
            assert part.items[row] == full.items[original]
            np.testing.assert_array_equal(np.sort(exclusions.row(row)), np.sort(full_exclusions.row(original)))
    assert len(sample_queries(data, limit=0, seed=0).test) == 6  # 0 = all
