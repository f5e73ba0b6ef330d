"""How many CPU cores the process may use, and each batch's share of them (FAISS's OpenMP and TensorFlow).

A serving process runs up to `max_concurrent_batches` batches at once, each in its own thread, beside the event
loop; with `--workers N` several such processes share the machine. Each batch gets its share of the cores:
FAISS's OpenMP threads are set per batch (a lone batch uses the whole share, concurrent ones split it), and
TensorFlow's thread pools are sized once, before TensorFlow starts, to one batch's share. On a small machine
that is one thread each: a tiny query tower then runs on the calling thread's core instead of waking pool
threads for each of its ops, which costs more CPU than the ops themselves.
"""

from __future__ import annotations

import os

# Set by the worker supervisor: the cores of the machine that one worker process may count on.
WORKER_CPUS_ENV = "RETRIEVAL_WORKER_CPUS"
_TF_THREADS_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_cpus() -> int:
    """This process's share of the cores: a worker's share under `--workers N`, else every available core."""
    share = os.environ.get(WORKER_CPUS_ENV)
    return max(1, int(share)) if share else available_cpus()


def worker_cpus(workers: int) -> int:
    """The cores each of `workers` processes may count on."""
    return max(1, available_cpus() // max(1, workers))


def tensorflow_thread_env(concurrent_batches: int) -> dict[str, str]:
    """TensorFlow's intra- and inter-op pool sizes for one batch's share of this process's cores, as the
    environment variables TensorFlow reads when it starts (the caller keeps any the user set)."""
    threads = str(max(1, process_cpus() // max(1, concurrent_batches)))
    return dict.fromkeys(_TF_THREADS_ENV, threads)


def share_cpu_threads(batches: int, queries: int | None = None) -> None:
    """In a compute thread, before its batch: FAISS (OpenMP) uses the process's share of one of `batches`
    batches running at once, so a lone batch uses every core and concurrent ones do not oversubscribe them; and
    no more threads than the batch has `queries` (FAISS splits a search by query: a thread more only wakes up to
    wait)."""
    import faiss  # here, not at the top: the command line and the supervisor use this module without FAISS

    threads = max(1, process_cpus() // max(1, batches))
    faiss.omp_set_num_threads(threads if queries is None else max(1, min(threads, queries)))
