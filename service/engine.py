"""The loaded model: query tower, FAISS index (GPU when FAISS has one) and item ids of one bundle version.

`Engine.retrieve` answers a batch of validated queries with one query-tower call and ONE index search for
max(k_i + |exclusions_i|) neighbours (bounded by the catalog, and by FAISS's GPU k limit), then drops each
query's excluded items, keeping the order. Exclusions are filtered here, never with an IDSelector, which GPU
indexes ignore. Queries with an item filter leave that batched search: grouped by filter, each group is answered
by one search of the filter planner (`service.filtered_search`, `service.filter_planner`). All calls
block: run them off the event loop. Concurrent calls search a CPU index at the same time but take turns on a GPU
index, which FAISS allows one calling thread at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import tensorflow as tf

from model.bundle.contract import (
    GPU_MAX_K,
    AttributeKind,
    CategoricalFeature,
    Manifest,
    TowerSpec,
    place_index,
    place_index_sharded,
    refined,
)
from model.bundle.reader import Bundle
from model.bundle.reserved import IndexMmapMode
from service import tracing
from service.attributes import AttributeTable
from service.filter_planner import FilterPlanner, PlannerConfig
from service.filtered_search import FilteredSearch
from service.item_index import ItemIndex
from service.observer import NullObserver, ServingObserver
from service.query import Query
from service.responses import encode_responses
from service.results import RetrievalResult
from service.validation import default_features
from service.wire import CandidateEncoder

logger = logging.getLogger(__name__)

Encoder = Callable[[Mapping[str, np.ndarray]], np.ndarray]


class Engine:
    """One bundle version, ready to serve.

    Args:
        manifest: the bundle's manifest (name, version, spec, index type).
        encoder: raw features by name ([B] or [B, n] strings, [B] float32) -> [B, d] float32 queries.
        index: FAISS index over the item embeddings (already on its device); id i is row i of `item_ids`. When
            the manifest's index spec has a k_factor, searches re-rank its candidates from `item_embeddings`.
        item_ids: [N] external item ids (an `ItemIndex` is shared as is).
        index_device: "cpu" or "gpu:<n>".
        query_device: where the query tower runs, "cpu" or "gpu:<n>".
        observer: receives stage timings.
        keep_alive: objects the index needs alive (e.g. FAISS GPU resources).
        display: display columns by name, each [N] aligned with `item_ids` (e.g. titles).
        item_embeddings: [N, d] item embeddings (row i = FAISS id i; memory-mapped from the bundle), the query
            vectors of similar-item queries and what filtered queries score by brute force; None: the engine
            answers no similar-item or filtered query.
        attributes: the filterable attributes of the catalog; None: none.
        planner: thresholds of the filter planner.
    """

    def __init__(
        self,
        *,
        manifest: Manifest,
        encoder: Encoder,
        index: faiss.Index,
        item_ids: np.ndarray | pa.Array | ItemIndex,
        index_device: str = "cpu",
        query_device: str = "cpu",
        observer: ServingObserver | None = None,
        keep_alive: Any = None,
        display: Mapping[str, np.ndarray] | None = None,
        item_embeddings: np.ndarray | None = None,
        attributes: AttributeTable | None = None,
        planner: PlannerConfig | None = None,
    ) -> None:
        if index.ntotal != len(item_ids):
            raise ValueError(f"index holds {index.ntotal} vectors but there are {len(item_ids)} item ids")
        self.manifest = manifest
        self.index_device = index_device
        self.query_device = query_device
        self._encoder = encoder
        self._item_ids = item_ids if isinstance(item_ids, ItemIndex) else ItemIndex(item_ids)
        on_gpu = index_device.startswith("gpu")
        self._max_fetch = min(len(item_ids), GPU_MAX_K) if on_gpu else len(item_ids)
        # An approximate index whose spec asks for it is re-ranked exactly from the item embeddings.
        self._index = refined(index, item_embeddings, manifest.index.k_factor, max_fetch=self._max_fetch)
        # FAISS GPU indexes and their resources take one calling thread at a time.
        self._search_lock: AbstractContextManager[Any] = threading.Lock() if on_gpu else nullcontext()
        self._observer = observer or NullObserver()
        self._keep_alive = keep_alive
        self._display = {name: np.asarray(values, dtype=object) for name, values in (display or {}).items()}
        self._wire = CandidateEncoder(self._item_ids.arrow)
        self._item_embeddings = item_embeddings
        self._cosine = manifest.similarity == "cosine"
        self.attributes = attributes or AttributeTable.empty(len(item_ids))
        self._filtered_search = (
            FilteredSearch(
                FilterPlanner(
                    self._index,
                    item_embeddings,
                    on_gpu=on_gpu,
                    max_fetch=self._max_fetch,
                    config=planner,
                    search_lock=self._search_lock,
                ),
                self.attributes,
            )
            if item_embeddings is not None
            else None
        )

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        gpu_device: int = 0,
        index_mmap: IndexMmapMode = "off",
        shard_gpus: bool = False,
        observer: ServingObserver | None = None,
    ) -> Engine:
        """Loads a bundle's query tower, items and index; moves the index to GPU `gpu_device` when possible.

        Args:
            bundle: an opened (validated) bundle.
            gpu_device: FAISS GPU to use; negative keeps the index on the CPU.
            index_mmap: memory-map the index file: "on", "auto" (large files) or "off" (model/bundle/index_mmap.py).
            shard_gpus: shard the index across every GPU FAISS sees when there are several
                (model/bundle/index_shards.py); otherwise it goes whole to GPU `gpu_device`.
            observer: receives stage timings.

        Raises:
            BundleError: if a file cannot be loaded.
        """
        encoder = bundle.load_query_tower()
        items = bundle.load_items(ids=False)  # the ids as Arrow, not a Python str per item
        item_ids = ItemIndex(bundle.load_item_id_column())
        place = place_index_sharded if shard_gpus else place_index
        index, device, resources = place(bundle.load_index(mmap=index_mmap), bundle.manifest.index, gpu_device)
        kinds = {a.name: a.kind for a in bundle.manifest.filterable_attributes}
        attributes = AttributeTable(
            len(item_ids), {name: (kinds[name], array) for name, array in items.attributes.items()}
        )
        return cls(
            manifest=bundle.manifest,
            encoder=encoder,
            index=index,
            item_ids=item_ids,
            index_device=device,
            query_device=query_device(),
            observer=observer,
            keep_alive=resources,
            display=items.display,
            item_embeddings=bundle.load_item_embeddings(mmap=True),
            attributes=attributes,
        )

    @property
    def spec(self) -> TowerSpec:
        return self.manifest.query_tower

    @property
    def item_count(self) -> int:
        return len(self._item_ids)

    def row_of(self, item_id: str) -> int | None:
        """The catalog row (FAISS id) of an external item id, or None when the catalog lacks it."""
        return self._item_ids.row_of(item_id)

    @property
    def answers_similar_items(self) -> bool:
        return self._item_embeddings is not None

    @property
    def attribute_kinds(self) -> Mapping[str, AttributeKind]:
        """The filterable attributes a query's filter may name, with their kinds."""
        return self.attributes.kinds

    @property
    def display_names(self) -> tuple[str, ...]:
        """The display attributes a query may select."""
        return tuple(self._display)

    def retrieve(self, queries: Sequence[Query]) -> list[RetrievalResult]:
        """Top-k items for each query, excluded items removed; results[i] answers queries[i]."""
        return self._answer(queries, encode=False)[0]

    def respond(self, queries: Sequence[Query]) -> list[bytes]:
        """Like `retrieve`, but each answer is the serialised RetrieveCandidatesResponse (echoing the query's
        request id), built for the whole batch at once (service/responses.py)."""
        return self._answer(queries, encode=True)[1]

    def _answer(self, queries: Sequence[Query], *, encode: bool) -> tuple[list[RetrievalResult], list[bytes]]:
        if not queries:
            return [], []
        start = time.perf_counter()
        embeddings = self._embed(queries)
        encoded = time.perf_counter()
        plain = [i for i, q in enumerate(queries) if q.filter is None]
        results: list[RetrievalResult] = [None] * len(queries)  # type: ignore[list-item]
        if plain:
            subset = [queries[i] for i in plain]
            vectors = embeddings if len(plain) == len(queries) else embeddings[plain]
            for i, result in zip(plain, self._search(subset, vectors), strict=True):
                results[i] = result
        filtered = [i for i, q in enumerate(queries) if q.filter is not None]
        if filtered:
            answered = self._filtered([queries[i] for i in filtered], embeddings[filtered])
            for i, result in zip(filtered, answered, strict=True):
                results[i] = result
        searched = time.perf_counter()
        responses = encode_responses(results, [q.request_id for q in queries], self._wire) if encode else []
        done = time.perf_counter()
        self._observer.on_stage("query_tower", encoded - start)
        self._observer.on_stage("index_search", searched - encoded)
        self._observer.on_stage("postprocess", done - searched)
        if tracing.active():
            stages = (
                ("query_tower", encoded - start),
                ("index_search", searched - encoded),
                ("postprocess", done - searched),
            )
            tracing.stage_spans(self.manifest.model_name, self.manifest.model_version, len(queries), stages)
        return results, responses

    def _search(self, queries: Sequence[Query], embeddings: np.ndarray) -> list[RetrievalResult]:
        """Unfiltered queries: one index search for the deepest k + |exclusions| of the batch."""
        excluded = [self._rows(q.exclude) for q in queries]
        fetch = min(max(q.k + len(rows) for q, rows in zip(queries, excluded, strict=True)), self._max_fetch)
        with self._search_lock:
            scores, ids = self._index.search(embeddings, fetch)
        return self._results(queries, excluded, ids, scores)

    def _filtered(self, queries: Sequence[Query], vectors: np.ndarray) -> list[RetrievalResult]:
        """Filtered queries: each one's top k among the rows that pass its filter and are not excluded."""
        if self._filtered_search is None:
            raise RuntimeError("this engine holds no item embeddings for filtered queries")
        answers = self._filtered_search.search(
            vectors,
            [q.filter for q in queries],  # type: ignore[misc]  # only queries with a filter come here
            [q.k for q in queries],
            [self._rows(q.exclude) for q in queries],
        )
        name, version = self.manifest.model_name, self.manifest.model_version
        results = []
        for query, (rows, scores) in zip(queries, answers, strict=True):
            display = self._display_of(rows, query.display) if query.display else ()
            results.append(RetrievalResult(rows, scores, len(rows) < query.k, name, version, display, self._item_ids))
        return results

    def _embed(self, queries: Sequence[Query]) -> np.ndarray:
        """[B, d] query vectors: the query tower's for feature queries (one call for all of them), the mean item
        embedding for similar-item queries (unit norm under cosine similarity)."""
        towered = [i for i, q in enumerate(queries) if not q.items]
        if len(towered) == len(queries):
            return np.ascontiguousarray(self._encoder(self._stack(queries)), dtype=np.float32)
        if self._item_embeddings is None:
            raise RuntimeError("this engine holds no item embeddings for similar-item queries")
        similar = [i for i, q in enumerate(queries) if q.items]
        vectors = np.empty((len(queries), self.manifest.embedding_dim), dtype=np.float32)
        means = np.stack([np.asarray(self._item_embeddings[list(queries[i].items)]).mean(axis=0) for i in similar])
        if self._cosine:
            means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        vectors[similar] = means
        if towered:
            vectors[towered] = self._encoder(self._stack([queries[i] for i in towered]))
        return vectors

    def warm_up(self, batch_sizes: Sequence[int] = (1, 8)) -> None:
        """Runs dummy batches through the tower and the index so the first requests do not pay for tracing."""
        query = Query(features=default_features(self.spec, "__warmup__"), k=min(10, self.item_count))
        for size in batch_sizes:
            self.retrieve([query] * size)
        logger.info(
            "engine warmed up model=%s version=%d batch_sizes=%s",
            self.manifest.model_name,
            self.manifest.model_version,
            list(batch_sizes),
        )

    def _stack(self, queries: Sequence[Query]) -> dict[str, np.ndarray]:
        columns = {}
        for feature in self.spec.features:
            values = [q.features[feature.name] for q in queries]
            if isinstance(feature, CategoricalFeature):
                columns[feature.name] = np.array(values, dtype=object)
            else:
                columns[feature.name] = np.array(values, dtype=np.float32)
        return columns

    def _rows(self, item_ids: frozenset[str]) -> np.ndarray:
        return self._item_ids.rows_of(item_ids)

    def _results(
        self, queries: Sequence[Query], excluded: Sequence[np.ndarray], ids: np.ndarray, scores: np.ndarray
    ) -> list[RetrievalResult]:
        """Per query: its top k after exclusions. FAISS pads missing neighbours with -1 at the end of a row."""
        found = (ids >= 0).sum(axis=1).tolist()
        name, version = self.manifest.model_name, self.manifest.model_version
        results = []
        for i, (query, rows) in enumerate(zip(queries, excluded, strict=True)):
            if len(rows):
                keep = (ids[i] >= 0) & ~np.isin(ids[i], rows)
                top, top_scores = ids[i][keep][: query.k], scores[i][keep][: query.k]
            else:
                n = min(query.k, found[i])
                top, top_scores = ids[i, :n], scores[i, :n]
            display = self._display_of(top, query.display) if query.display else ()
            results.append(RetrievalResult(top, top_scores, len(top) < query.k, name, version, display, self._item_ids))
        return results

    def _display_of(self, rows: np.ndarray, names: Sequence[str]) -> tuple[dict[str, str], ...]:
        """The selected display attributes of the items at `rows`; built only for queries that ask."""
        columns = {name: self._display[name][rows].tolist() for name in names}
        return tuple({name: str(column[i]) for name, column in columns.items()} for i in range(len(rows)))


def respond_grouped(work: Sequence[tuple[Engine, Query]]) -> list[bytes]:
    """Answers (engine, query) pairs with serialised responses, one `respond` call per distinct engine, in the
    input order.

    Requests validated against one model version are served by that version even when a newer one was
    swapped in while they waited.
    """
    groups: dict[int, tuple[Engine, list[int]]] = {}
    for position, (engine, _) in enumerate(work):
        groups.setdefault(id(engine), (engine, []))[1].append(position)
    answers: list[bytes] = [b""] * len(work)
    for engine, positions in groups.values():
        for position, answer in zip(positions, engine.respond([work[p][1] for p in positions]), strict=True):
            answers[position] = answer
    return answers


def query_device() -> str:
    """Where TensorFlow places the query tower: "gpu:0" when it sees a GPU, else "cpu"."""
    return "gpu:0" if tf.config.list_physical_devices("GPU") else "cpu"
