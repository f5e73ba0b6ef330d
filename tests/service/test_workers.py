"""The worker supervisor's pure parts: GPU shares per worker, readiness markers, the shared port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from service.cpu import WORKER_CPUS_ENV, tensorflow_thread_env
from service.readiness import WorkerReadiness, marker_path
from service.workers import _reserve_port, gpu_count, worker_environment


def test_worker_i_uses_gpu_i_mod_n_and_tensorflow_grows_its_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [worker_environment(i, 3)["CUDA_VISIBLE_DEVICES"] for i in range(5)] == ["0", "1", "2", "0", "1"]
    assert worker_environment(0, 3)["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    monkeypatch.setattr("service.cpu.available_cpus", lambda: 16)
    assert worker_environment(1, 0, workers=4)[WORKER_CPUS_ENV] == "4"  # each worker's share of the cores
    monkeypatch.setenv(WORKER_CPUS_ENV, "4")
    assert tensorflow_thread_env(2) == {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"}
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment(2, 0)  # no GPU: nothing to choose
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the GPUs this server was given
    assert gpu_count() == 2
    assert [worker_environment(i, 2)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["4", "6", "4"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert gpu_count() == 0


def test_health_needs_every_worker_warm(tmp_path: Path) -> None:
    workers = [WorkerReadiness(tmp_path, i, 3) for i in range(3)]
    assert not workers[0].all_ready()
    for worker in workers:
        worker.mark(True)
    assert all(w.all_ready() for w in workers)
    marker_path(tmp_path, 1).unlink()  # the supervisor's word when worker 1 died
    assert not any(w.all_ready() for w in workers)
    workers[1].mark(True)
    workers[2].mark(False)  # shutting down
    assert not workers[0].all_ready()
    with pytest.raises(ValueError, match="worker index"):
        WorkerReadiness(tmp_path, 3, 3)


def test_the_reserved_port_is_shared_by_reuseport_listeners() -> None:
    reservation, port = _reserve_port("127.0.0.1", 0)
    try:
        assert port > 0
        listeners = []
        for _ in range(2):  # what each worker's gRPC server does
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            listeners.append(listener)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # a listening worker accepts; the reservation itself never does
    finally:
        for listener in listeners:
            listener.close()
        reservation.close()
