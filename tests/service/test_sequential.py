"""A sequential (history-based) bundle is served by the same server: the request's history feeds the tower."""

from __future__ import annotations

from pathlib import Path

import grpc
import keras
import numpy as np
import pytest

from model.bundle.export import export_bundle
from model.bundle.index import IndexSpec
from model.bundle.reserved import HISTORY_FEATURE
from model.catalog import ItemCatalog
from model.samplers import InBatchSampler
from model.scorer import ContrastiveScorer
from model.sequence import (
    MaskedItemObjective,
    SequenceVocabulary,
    SequentialRetrievalModel,
    TransformerSequenceEncoder,
    build_query_model,
    query_spec,
)
from service.client import RetrievalClient
from tests.service.helpers import MODEL, ServerThread, oracle_top_k, server_config

NUM_ITEMS, L, DIM, WIDTH = 60, 6, 16, 8
ITEM_IDS = np.array([f"m{i}" for i in range(NUM_ITEMS)], dtype=object)


@pytest.fixture(scope="module")
def sequential_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(3)
    model = SequentialRetrievalModel(
        keras.layers.Embedding(SequenceVocabulary(NUM_ITEMS).size, DIM),
        TransformerSequenceEncoder(L, DIM, num_layers=1, num_heads=2),
        ItemCatalog(ITEM_IDS, {"item_id": ITEM_IDS.astype(str)}, np.ones(NUM_ITEMS)),
        InBatchSampler(),
        ContrastiveScorer(),
        MaskedItemObjective(p=0.2),
        max_length=L,
        l2_normalize=True,
    )
    models = tmp_path_factory.mktemp("sequential-models")
    export_bundle(
        models,
        MODEL,
        query_tower=build_query_model(model, history_length=WIDTH),
        query_spec=query_spec(model, history_length=WIDTH),
        item_embeddings=model.item_embeddings(),
        item_ids=ITEM_IDS.astype(str),
        popularity=np.ones(NUM_ITEMS, np.int64),
        index_spec=IndexSpec(factory="Flat"),
        similarity="cosine",
        metrics={},
    )
    return models


def _padded(history: list[str]) -> list[str]:
    recent = history[-WIDTH:]
    return recent + [""] * (WIDTH - len(recent))


def test_history_drives_the_answer_and_matches_offline(sequential_bundle: Path) -> None:
    histories = [["m1", "m2", "m3"], ["m40", "m41"], [f"m{i}" for i in range(20)], []]
    with ServerThread(server_config(sequential_bundle)) as server, RetrievalClient(server.target) as client:
        info = client.service_info()
        responses = [client.retrieve("u", 10, history=h) for h in histories]
        excluded = client.retrieve("u", 10, history=histories[0], exclude_history=True)
    assert info.max_history_length == WIDTH
    assert [f.name for f in info.features] == []  # the history comes from history_item_ids, not user_features
    features = {HISTORY_FEATURE: np.array([_padded(h) for h in histories], dtype=object)}
    expected, scores = oracle_top_k(sequential_bundle / MODEL / "1", features, 10)
    for response, ids, row in zip(responses, expected, scores, strict=True):
        assert [c.item_id for c in response.candidates] == ids  # only the latest WIDTH items count
        np.testing.assert_allclose([c.score for c in response.candidates], row, atol=1e-5)
    assert [c.item_id for c in responses[0].candidates] != [c.item_id for c in responses[1].candidates]
    assert not {"m1", "m2", "m3"} & {c.item_id for c in excluded.candidates}


def test_history_in_user_features_is_refused(sequential_bundle: Path) -> None:
    with (
        ServerThread(server_config(sequential_bundle)) as server,
        RetrievalClient(server.target) as client,
        pytest.raises(grpc.RpcError) as error,
    ):
        client.retrieve("u", 5, features={"history": ["m1"]})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'user_features["history"]' in error.value.details()
