"""FAISS GPU placement of a bundle's index: which indexes move to a GPU, with which options, and FAISS's limits.

Imports no TensorFlow, so the GPU check (tests/bundle/test_gpu_index.py, bench/gpu_index.py, docs/gpu.md) runs
where only a FAISS GPU build and NumPy are installed.
"""

from __future__ import annotations

import logging
from typing import Any

import faiss

from model.bundle.index import BLAS_THRESHOLD, IndexSpec, set_search_params

logger = logging.getLogger(__name__)

# FAISS GPU indexes answer at most this many neighbours per query (its GPU k-selection limit).
GPU_MAX_K = 2048
# GPU IVF-PQ keeps a query's lookup tables (m x 2^nbits distances) in one block's shared memory, 48 KiB; tables
# of float32 that do not fit (m > 48 at 8 bits, e.g. d = 128 with m = 64) are kept as float16.
GPU_SHARED_MEMORY_BYTES = 48 * 1024


def needs_float16_tables(spec: IndexSpec) -> bool:
    """Whether GPU IVF-PQ must keep `spec`'s lookup tables as float16 to fit in shared memory (False unless PQ)."""
    float32_table_bytes = (spec.pq_m or 0) * 2 ** (spec.pq_nbits or 0) * 4
    return float32_table_bytes > GPU_SHARED_MEMORY_BYTES


def place_index(index: faiss.Index, spec: IndexSpec, gpu_device: int) -> tuple[faiss.Index, str, Any]:
    """Moves `index` to FAISS GPU `gpu_device` when FAISS has GPUs (and `gpu_device` >= 0).

    The GPU copy gets `spec`'s nprobe. HNSW has no FAISS GPU implementation and stays on the CPU, as does an
    index FAISS fails to move (e.g. IVF-PQ with fewer than 8 bits per code); both are logged. A GPU index and
    its resources serve one calling thread at a time.

    Args:
        index: the CPU index, with `spec`'s search parameters.
        spec: the spec it was built from.
        gpu_device: FAISS GPU to use; negative keeps the index on the CPU.

    Returns:
        (index, device, resources): device is "cpu" or "gpu:<n>"; resources must stay alive as long as a GPU
        index is used (None on the CPU).
    """
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    if gpu_device < 0 or faiss.get_num_gpus() == 0:
        return index, "cpu", None
    if spec.hnsw_m is not None:
        logger.warning("index stays on cpu factory=%s reason=FAISS has no GPU HNSW", spec.factory)
        return index, "cpu", None
    try:
        resources = faiss.StandardGpuResources()
        options = faiss.GpuClonerOptions()
        # For IVF-PQ this is the lookup tables' type; Flat and IVF-Flat would store float16 vectors: kept False.
        options.useFloat16 = needs_float16_tables(spec)
        gpu_index = faiss.index_cpu_to_gpu(resources, gpu_device, index, options)
        if spec.nprobe is not None:
            faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", spec.nprobe)
    except (RuntimeError, AttributeError) as error:
        logger.warning("index stays on cpu factory=%s reason=%s", spec.factory, error)
        set_search_params(index, spec)
        return index, "cpu", None
    logger.info(
        "index moved to gpu device=%d factory=%s float16_lookup_tables=%s",
        gpu_device,
        spec.factory,
        options.useFloat16,
    )
    return gpu_index, f"gpu:{gpu_device}", resources
