"""Sharding one FAISS index into FAISS `IndexShards`: across every GPU of a host, or over CPU sub-indexes.

A catalog too large for one GPU's memory is split into contiguous id ranges, one per GPU, and searched as one
index: FAISS's `index_cpu_to_all_gpus` with `shard=True` builds the per-GPU sub-indexes and an `IndexShards` that
searches them in parallel and merges their top-k. `shard_on_cpu` builds the same structure from CPU
sub-indexes, so that the sharded path is tested (same answers as one index) where there is no GPU.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import faiss
import numpy as np

from model.bundle.gpu import needs_float16_tables, place_index
from model.bundle.index import BLAS_THRESHOLD, IndexSpec, set_search_params

logger = logging.getLogger(__name__)


def shard_bounds(num_items: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous id ranges [a, b) of `num_shards` near-equal shards of ids 0..num_items-1."""
    if num_shards < 1 or num_items < num_shards:
        raise ValueError(f"num_shards must be in [1, {num_items}] (the items), got {num_shards}")
    edges = np.linspace(0, num_items, num_shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def shard_on_cpu(index: faiss.Index, spec: IndexSpec, num_shards: int) -> faiss.IndexShards:
    """Splits a CPU Flat or IVF index (ids = row numbers) into `num_shards` CPU sub-indexes of contiguous ids.

    IVF shards share the coarse quantizer and keep the global ids of their entries; Flat shards hold their
    rows and the `IndexShards` offsets their ids (successive ids). Searching the result returns what `index`
    returns.

    Args:
        index: the filled index, as `build_index` or a bundle's reader returns it.
        spec: the spec it was built from (its search parameters are applied to every shard).
        num_shards: sub-indexes to build.

    Raises:
        ValueError: for HNSW (its graph does not split) or a bad shard count.
    """
    if spec.hnsw_m is not None:
        raise ValueError(f"{spec.factory}: an HNSW graph cannot be split into shards; use Flat or IVF")
    bounds = shard_bounds(index.ntotal, num_shards)
    is_ivf = spec.nlist is not None
    # Threaded; successive ids for Flat only. (The faiss type stubs know only the one-argument constructor.)
    shards = faiss.IndexShards(index.d, True, not is_ivf)  # type: ignore[call-arg]
    for a, b in bounds:
        shard = faiss.clone_index(index)
        shard.reset()
        if is_ivf:
            faiss.extract_index_ivf(index).copy_subset_to(faiss.extract_index_ivf(shard), 0, a, b)  # 0: id range
        else:
            shard.add(index.reconstruct_n(a, b - a))
        shards.add_shard(shard)  # FAISS's Python wrapper keeps a reference to each shard
    set_search_params(shards, spec)
    return shards


def place_index_sharded(index: faiss.Index, spec: IndexSpec, gpu_device: int) -> tuple[faiss.Index, str, Any]:
    """Shards `index` across every GPU FAISS sees (one contiguous id range each) when it sees two or more.

    With fewer than two GPUs, or HNSW (no FAISS GPU implementation), or `gpu_device` < 0, this is
    `place_index(index, spec, gpu_device)`. A FAISS error while sharding is logged and falls back the same way.

    Returns:
        (index, device, resources): device is "gpus:<n>" for a sharded index (resources are held by the index
        itself: `index_cpu_to_all_gpus` references them), else what `place_index` returns.
    """
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    num_gpus = faiss.get_num_gpus()
    if gpu_device < 0 or num_gpus < 2 or spec.hnsw_m is not None:
        return place_index(index, spec, gpu_device)
    try:
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True
        options.useFloat16 = needs_float16_tables(spec)
        sharded = faiss.index_cpu_to_all_gpus(index, co=options, ngpu=num_gpus)
        if spec.nprobe is not None:
            faiss.GpuParameterSpace().set_index_parameter(sharded, "nprobe", spec.nprobe)
    except (RuntimeError, AttributeError) as error:
        logger.warning("index not sharded factory=%s gpus=%d reason=%s", spec.factory, num_gpus, error)
        return place_index(index, spec, gpu_device)
    logger.info("index sharded across gpus count=%d factory=%s items=%d", num_gpus, spec.factory, index.ntotal)
    return sharded, f"gpus:{num_gpus}", None
