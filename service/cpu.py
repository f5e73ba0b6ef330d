"""How many CPU cores the process may use, and FAISS's share of them per batch running at once."""

from __future__ import annotations

import os

import faiss


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def share_cpu_threads(batches: int) -> None:
    """In a compute thread, before its batch: FAISS (OpenMP) uses the CPUs' share of one of `batches` batches
    running at once, so a lone batch uses every core and concurrent ones do not oversubscribe them."""
    faiss.omp_set_num_threads(max(1, available_cpus() // max(1, batches)))
