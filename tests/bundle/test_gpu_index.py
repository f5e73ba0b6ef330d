"""GPU placement: an index that `place_index` moves to a FAISS GPU answers as its CPU original does.

The GPU tests run only where FAISS sees a GPU; the CPU test runs everywhere. No TensorFlow is imported, so the
module runs where only a FAISS GPU build, NumPy and pytest are installed.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from model.bundle.gpu import GPU_MAX_K, GPU_SHARED_MEMORY_BYTES, needs_float16_tables, place_index
from model.bundle.index import IndexKind, IndexSpec, build_index, choose_index_spec, l2_normalize, measure_recall
from model.bundle.index_mmap import read_index
from model.bundle.refine import RefinedIndex
from model.evaluation import exact_top_k
from tests.bundle.helpers import clustered

needs_gpu = pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="FAISS sees no GPU (CPU-only build or no device)")

# 12,000 items: enough training points for 8-bit PQ codes (256 per 39-point list), which GPU IVF-PQ requires.
NUM_ITEMS, NUM_QUERIES, K = 12_000, 200, 50


@functools.cache
def catalog(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-norm clustered items [N, dim], queries [Q, dim] and their exact top-K ids [Q, K]."""
    items, queries = (l2_normalize(x) for x in clustered(NUM_ITEMS, NUM_QUERIES, dim))
    exact, _ = exact_top_k(queries, items, K, rng=np.random.default_rng(0))
    return items, queries, exact


@functools.cache
def built(kind: IndexKind, dim: int) -> tuple[IndexSpec, faiss.Index]:
    """The CPU index the bundle builds for `catalog(dim)`."""
    items = catalog(dim)[0]
    spec = choose_index_spec(len(items), dim, kind)
    return spec, build_index(items, spec)


def assert_same_top_k(expected: tuple[np.ndarray, np.ndarray], actual: tuple[np.ndarray, np.ndarray], dim: int) -> None:
    """Scores agree rank by rank; ids differ only by swaps among items tied (1e-4) with the k-th score."""
    (expected_scores, expected_ids), (actual_scores, actual_ids) = expected, actual
    np.testing.assert_allclose(actual_scores, expected_scores, rtol=0, atol=1e-4)
    items, queries, _ = catalog(dim)
    for row, (want, got) in enumerate(zip(expected_ids, actual_ids, strict=True)):
        swapped = np.setxor1d(want, got)
        margin = np.abs(items[swapped] @ queries[row] - expected_scores[row, -1])
        assert np.all(margin <= 1e-4), (row, swapped, margin)


def test_a_negative_device_keeps_the_index_on_the_cpu() -> None:
    _, queries, _ = catalog(32)
    for kind in ("flat", "ivf"):
        spec, index = built(kind, 32)
        before = index.search(queries, K)
        placed, device, resources = place_index(index, spec, gpu_device=-1)
        assert (placed, device, resources) == (index, "cpu", None)
        after = placed.search(queries, K)
        np.testing.assert_array_equal(after[1], before[1])
        np.testing.assert_array_equal(after[0], before[0])
    assert faiss.extract_index_ivf(placed).nprobe == spec.nprobe
    if faiss.get_num_gpus() == 0:
        assert place_index(index, spec, gpu_device=0)[1] == "cpu"


def test_float16_tables_only_for_pq_tables_over_48_kib() -> None:
    assert GPU_SHARED_MEMORY_BYTES == 48 * 1024
    assert not needs_float16_tables(IndexSpec("Flat"))
    assert not needs_float16_tables(IndexSpec("IVF64,Flat", nprobe=8))
    assert not needs_float16_tables(IndexSpec("IVF64,PQ32", nprobe=8))  # 32 x 256 x 4 B = 32 KiB
    assert not needs_float16_tables(IndexSpec("IVF64,PQ48", nprobe=8))  # 48 KiB: fits exactly
    assert needs_float16_tables(IndexSpec("IVF64,PQ64", nprobe=8))  # 64 KiB
    assert not needs_float16_tables(IndexSpec("IVF64,PQ64x6", nprobe=8))  # 64 x 64 x 4 B = 16 KiB


@needs_gpu
def test_flat_on_the_gpu_returns_the_cpu_top_k() -> None:
    _, queries, _ = catalog(32)
    spec, index = built("flat", 32)
    placed, device, resources = place_index(index, spec, gpu_device=0)
    assert device == "gpu:0" and resources is not None and placed is not index
    assert placed.ntotal == index.ntotal
    assert_same_top_k(index.search(queries, K), placed.search(queries, K), 32)


@needs_gpu
@pytest.mark.parametrize(
    ("kind", "dim"),
    [("ivf", 32), ("ivfpq", 32), ("ivfpq", 128)],
    ids=["ivf", "ivfpq-float32-tables", "ivfpq-float16-tables"],
)
def test_ivf_on_the_gpu_recalls_as_on_the_cpu(kind: IndexKind, dim: int) -> None:
    items, queries, exact = catalog(dim)
    spec, index = built(kind, dim)
    cpu = measure_recall(index, items, queries, K, exact).recall
    placed, device, _resources = place_index(index, spec, gpu_device=0)
    assert device == "gpu:0", spec
    assert placed.nprobe == spec.nprobe
    gpu = measure_recall(placed, items, queries, K, exact).recall
    assert abs(gpu - cpu) <= 0.02, (spec, cpu, gpu)
    if kind == "ivfpq" and dim == 128:  # 64 sub-quantizers: float32 tables would not fit in shared memory
        assert needs_float16_tables(spec)


@needs_gpu
def test_hnsw_stays_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    items, queries = clustered(2_000, 20, 32)
    spec = choose_index_spec(len(items), 32, "hnsw")
    index = build_index(items, spec)
    with caplog.at_level(logging.WARNING, logger="model.bundle.gpu"):
        placed, device, resources = place_index(index, spec, gpu_device=0)
    assert (placed, device, resources) == (index, "cpu", None)
    assert "no GPU HNSW" in caplog.text
    assert placed.search(queries, 10)[1].min() >= 0


@needs_gpu
def test_k_up_to_the_gpu_limit() -> None:
    """GPU_MAX_K is FAISS's GPU k-selection limit: k = GPU_MAX_K answers as the CPU does, one more is refused."""
    _, queries, _ = catalog(32)
    spec, index = built("flat", 32)
    placed, device, _resources = place_index(index, spec, gpu_device=0)
    assert device == "gpu:0"
    assert_same_top_k(index.search(queries[:8], GPU_MAX_K), placed.search(queries[:8], GPU_MAX_K), 32)
    ivf_spec, ivf = built("ivf", 32)
    ivf_placed, ivf_device, _ivf_resources = place_index(ivf, ivf_spec, gpu_device=0)
    assert ivf_device == "gpu:0"
    ids = ivf_placed.search(queries[:8], GPU_MAX_K)[1]
    assert ids.shape == (8, GPU_MAX_K) and ids.min() >= -1 and ids.max() < NUM_ITEMS
    with pytest.raises(RuntimeError, match="selection up to"):
        placed.search(queries[:1], GPU_MAX_K + 1)


@needs_gpu
def test_an_index_faiss_cannot_move_stays_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    """GPU IVF-PQ needs 8-bit codes; a small catalog's 5-bit codes keep the index on the CPU, searchable."""
    items, queries = clustered(2_000, 20, 32)
    spec = choose_index_spec(len(items), 32, "ivfpq")
    assert spec.pq_nbits == 5
    index = build_index(items, spec)
    with caplog.at_level(logging.WARNING, logger="model.bundle.gpu"):
        placed, device, resources = place_index(index, spec, gpu_device=0)
    assert (placed, device, resources) == (index, "cpu", None)
    assert "index stays on cpu" in caplog.text
    assert faiss.extract_index_ivf(placed).nprobe == spec.nprobe
    assert placed.search(queries, 10)[1].shape == (20, 10)


@needs_gpu
def test_a_re_ranked_ivfpq_index_on_the_gpu_answers_as_on_the_cpu() -> None:
    """The engine's exact re-rank over a GPU IVF-PQ index: exact scores, the CPU re-rank's recall, and depth
    capped at the GPU's k limit (k x k_factor above it is fetched at GPU_MAX_K, not refused)."""
    items, queries, exact = catalog(32)
    spec, index = built("ivfpq", 32)
    placed, device, _resources = place_index(index, spec, gpu_device=0)
    assert device == "gpu:0" and spec.k_factor
    cpu = RefinedIndex(index, items, spec.k_factor)
    gpu = RefinedIndex(placed, items, spec.k_factor, max_fetch=GPU_MAX_K)
    cpu_recall = measure_recall(cpu, items, queries, K, exact).recall
    gpu_recall = measure_recall(gpu, items, queries, K, exact).recall
    assert gpu_recall >= cpu_recall - 0.02 and gpu_recall >= 0.9, (cpu_recall, gpu_recall)
    scores, ids = gpu.search(queries[:20], K)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries[:20], items[ids]), atol=1e-5)
    deep_scores, deep_ids = gpu.search(queries[:4], GPU_MAX_K // 2)  # asks the GPU for 4 x 1024: gets 2048
    assert deep_ids.shape == (4, GPU_MAX_K // 2) and np.all(np.diff(deep_scores, axis=1) <= 0)


@needs_gpu
def test_a_memory_mapped_ivf_index_moves_to_the_gpu(tmp_path: Path) -> None:
    """An IVF index read with IO_FLAG_MMAP (what --index-mmap on loads) is copied to the GPU and answers as the
    in-memory index placed there."""
    _, queries, _ = catalog(32)
    spec, index = built("ivf", 32)
    path = tmp_path / "index.faiss"
    faiss.write_index(index, str(path))
    mapped = read_index(path, "on")
    placed, device, _resources = place_index(mapped, spec, gpu_device=0)
    reference, _, _reference_resources = place_index(index, spec, gpu_device=0)
    assert device == "gpu:0"
    assert_same_top_k(reference.search(queries, K), placed.search(queries, K), 32)
