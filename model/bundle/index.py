"""FAISS index specs: choose parameters from the catalog size, build, tune search, measure recall vs exact.

All indexes use inner-product similarity (cosine bundles store L2-normalised item embeddings). FAISS ids are
row numbers of the item embedding matrix.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt

from model.evaluation import exact_top_k

METRIC = "inner_product"
# Below this many queries FAISS flat search skips BLAS; the default (128000) sends every realistic batch down the
# slow scan path. On one thread the two paths are close from 8 queries up (docs/benchmarks/flat_search.md).
BLAS_THRESHOLD = 8
# k-means wants at least this many training points per centroid (FAISS warns below it).
MIN_POINTS_PER_CENTROID = 39
# Training sample cap per centroid (FAISS subsamples above 256 per centroid anyway).
MAX_POINTS_PER_CENTROID = 256
# PQ sub-quantizer counts that GPU IVF-PQ supports (so that model/bundle/gpu.py can move the index to a GPU).
GPU_PQ_SUBQUANTIZERS = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 48, 56, 64, 96)

# IVF-PQ re-ranks its top k·4 exactly: recall@100 0.81 -> 0.997 at 10M items (docs/benchmarks/large_catalog.md).
IVFPQ_K_FACTOR = 4

IndexKind = Literal["flat", "ivf", "hnsw", "ivfpq"]

_FACTORY = re.compile(r"^(?:Flat|HNSW(?P<hnsw_m>\d+)|IVF(?P<nlist>\d+),(?:Flat|PQ(?P<pq_m>\d+)(?:x(?P<nbits>\d+))?))$")


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index to build and how to search it.

    Attributes:
        factory: a FAISS factory string: "Flat", "HNSW{M}", "IVF{nlist},Flat" or "IVF{nlist},PQ{m}[x{nbits}]".
        nprobe: inverted lists visited per query (IVF only; required there).
        ef_search: HNSW search beam width (HNSW only; required there).
        k_factor: re-rank the index's top k·k_factor exactly from the item embeddings and keep the best k
            (model/bundle/refine.py; approximate indexes only); None: the index's own order.
    """

    factory: str
    nprobe: int | None = None
    ef_search: int | None = None
    k_factor: int | None = None

    def __post_init__(self) -> None:
        match = _FACTORY.match(self.factory)
        if match is None:
            raise ValueError(
                f"unsupported index factory {self.factory!r}; expected Flat, HNSW{{M}}, IVF{{nlist}},Flat "
                "or IVF{nlist},PQ{m}[x{nbits}]"
            )
        nlist = self.nlist
        if nlist is not None:
            if self.nprobe is None or not 1 <= self.nprobe <= nlist:
                raise ValueError(f"{self.factory}: nprobe must be in [1, {nlist}], got {self.nprobe}")
        elif self.nprobe is not None:
            raise ValueError(f"{self.factory}: nprobe applies only to IVF indexes, got {self.nprobe}")
        if self.hnsw_m is not None:
            if self.ef_search is None or self.ef_search < 1:
                raise ValueError(f"{self.factory}: ef_search must be >= 1, got {self.ef_search}")
        elif self.ef_search is not None:
            raise ValueError(f"{self.factory}: ef_search applies only to HNSW indexes, got {self.ef_search}")
        if self.k_factor is not None and self.factory == "Flat":
            raise ValueError(f"Flat: k_factor applies only to approximate indexes, got {self.k_factor}")
        if min(self.parameters().values(), default=1) < 1:
            raise ValueError(f"{self.factory}: sizes must be positive")

    def _group(self, name: str) -> int | None:
        match = _FACTORY.match(self.factory)
        value = match.group(name) if match else None
        return None if value is None else int(value)

    @property
    def nlist(self) -> int | None:
        return self._group("nlist")

    @property
    def hnsw_m(self) -> int | None:
        return self._group("hnsw_m")

    @property
    def pq_m(self) -> int | None:
        return self._group("pq_m")

    @property
    def pq_nbits(self) -> int | None:
        return self._group("nbits") or (8 if self.pq_m is not None else None)

    def parameters(self) -> dict[str, int]:
        """Build and search parameters by their FAISS names (nlist, nprobe, M, efSearch, pq_m, pq_nbits, k_factor)."""
        named = {
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "M": self.hnsw_m,
            "efSearch": self.ef_search,
            "pq_m": self.pq_m,
            "pq_nbits": self.pq_nbits,
            "k_factor": self.k_factor,
        }
        return {key: value for key, value in named.items() if value is not None}


@dataclass(frozen=True)
class RecallRecord:
    """ANN recall@k against exact top-k, measured at export.

    Attributes:
        k: cutoff.
        num_queries: queries in the sample.
        recall: mean over queries of |ANN top-k ∩ exact top-k| / k.
    """

    k: int
    num_queries: int
    recall: float


def choose_nlist(num_items: int) -> int:
    """About 4·sqrt(N) inverted lists, clamped so that every list gets >= 39 training points."""
    return max(1, min(round(4 * math.sqrt(num_items)), num_items // MIN_POINTS_PER_CENTROID))


def choose_index_spec(num_items: int, dim: int, kind: IndexKind = "flat") -> IndexSpec:
    """Picks index parameters from the catalog size.

    IVF: nlist from `choose_nlist`; nprobe = 2·sqrt(nlist) (at least 8, at most nlist), a fraction of the
    lists that shrinks as lists get finer. HNSW: M=32, efSearch=128. IVF-PQ: the same lists, m the largest
    GPU-supported divisor of d with at least 2 dimensions per sub-vector, 8-bit codes when there are enough
    training points (256·39), fewer bits otherwise, and an exact re-rank of the top 4·k (`IVFPQ_K_FACTOR`): PQ
    scores alone miss about a fifth of the exact top 100 at 10M items.

    Args:
        num_items: catalog size N (>= 1).
        dim: embedding dimension d (>= 1).
        kind: "flat" (exact), "ivf", "hnsw" or "ivfpq".

    Returns:
        The spec.
    """
    if num_items < 1 or dim < 1:
        raise ValueError(f"num_items and dim must be >= 1, got num_items={num_items}, dim={dim}")
    if kind == "flat":
        return IndexSpec("Flat")
    if kind == "hnsw":
        return IndexSpec("HNSW32", ef_search=128)
    nlist = choose_nlist(num_items)
    nprobe = min(nlist, max(8, math.ceil(2 * math.sqrt(nlist))))
    if kind == "ivf":
        return IndexSpec(f"IVF{nlist},Flat", nprobe=nprobe)
    if kind == "ivfpq":
        m = max(c for c in GPU_PQ_SUBQUANTIZERS if dim % c == 0 and (dim // c >= 2 or c == 1))
        nbits = min(8, int(math.log2(num_items // MIN_POINTS_PER_CENTROID or 1)))
        if nbits < 1:
            raise ValueError(f"ivfpq needs at least {2 * MIN_POINTS_PER_CENTROID} items, got {num_items}")
        suffix = "" if nbits == 8 else f"x{nbits}"
        return IndexSpec(f"IVF{nlist},PQ{m}{suffix}", nprobe=nprobe, k_factor=IVFPQ_K_FACTOR)
    raise ValueError(f"kind must be one of flat, ivf, hnsw, ivfpq; got {kind!r}")


def build_index(embeddings: npt.ArrayLike, spec: IndexSpec, *, seed: int = 0) -> faiss.Index:
    """Builds an inner-product index over `embeddings`; FAISS id i is row i.

    Trainable indexes are trained on a seeded random subsample of at most 256 points per centroid.

    Args:
        embeddings: [N, d] float32 item embeddings.
        spec: the index to build.
        seed: seed of the training subsample and of k-means.

    Returns:
        The trained, filled index with `spec`'s search parameters applied.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be [N, d] with N >= 1, got shape {x.shape}")
    num_items, dim = x.shape
    if spec.nlist is not None and spec.nlist > num_items:
        raise ValueError(f"{spec.factory}: nlist={spec.nlist} exceeds the {num_items} items")
    if spec.pq_m is not None and dim % spec.pq_m:
        raise ValueError(f"{spec.factory}: pq m={spec.pq_m} does not divide d={dim}")
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    index = faiss.index_factory(dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        centroids = max(spec.nlist or 1, 2 ** (spec.pq_nbits or 0))
        sample_size = min(num_items, centroids * MAX_POINTS_PER_CENTROID)
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(num_items, size=sample_size, replace=False))]
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        ivf.cp.min_points_per_centroid = 1  # the clamp in choose_nlist already keeps lists fed
        if isinstance(index, faiss.IndexIVFPQ):
            # Polysemous training (slow simulated annealing) only serves Hamming-filtered search.
            index.do_polysemous_training = False  # type: ignore[attr-defined]
        index.train(sample)
    index.add(x)
    set_search_params(index, spec)
    return index


def set_search_params(index: faiss.Index, spec: IndexSpec) -> None:
    """Applies `spec`'s nprobe / efSearch to `index` (a no-op for Flat)."""
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    params = faiss.ParameterSpace()
    if spec.nprobe is not None:
        params.set_index_parameter(index, "nprobe", spec.nprobe)
    if spec.ef_search is not None:
        params.set_index_parameter(index, "efSearch", spec.ef_search)


def measure_recall(
    index: faiss.Index,
    embeddings: npt.ArrayLike,
    queries: npt.ArrayLike,
    k: int,
    exact_ids: npt.ArrayLike | None = None,
    *,
    seed: int = 0,
) -> RecallRecord:
    """Recall@k of `index` against exact top-k by dot product.

    Args:
        index: the ANN index over `embeddings`.
        embeddings: [N, d] item embeddings the index holds (the exact oracle's catalog).
        queries: [M, d] query embeddings.
        k: cutoff; clipped to N.
        exact_ids: [M, k] exact top-k ids when already known; computed with `exact_top_k` otherwise.
        seed: tie-breaking seed of the exact oracle.

    Returns:
        The mean fraction of each query's exact top-k that the index returns in its top-k.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, index.ntotal)
    if exact_ids is None:
        exact, _ = exact_top_k(q, embeddings, k, rng=np.random.default_rng(seed))
    else:
        exact = np.asarray(exact_ids)[:, :k]
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    _, found = index.search(q, k)
    hits = sum(len(np.intersect1d(a, b[b >= 0])) for a, b in zip(exact, found, strict=True))
    recall = hits / (k * q.shape[0]) if q.shape[0] else 1.0
    return RecallRecord(k=k, num_queries=int(q.shape[0]), recall=float(recall))


def read_index_header(path: str | Path) -> tuple[int, int]:
    """(d, ntotal) of a FAISS index file without loading it: a 4-byte type code, int32 d, int64 ntotal.

    Raises:
        ValueError: if the file is shorter than the header.
    """
    with Path(path).open("rb") as f:
        header = f.read(16)
    if len(header) < 16:
        raise ValueError(f"truncated ({len(header)} bytes, shorter than a FAISS header)")
    d, ntotal = struct.unpack("<iq", header[4:16])
    return d, ntotal


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of `x` [N, d] scaled to unit L2 norm (zero rows stay zero); float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
