"""Shared helpers of the observability tests: traffic over plain stubs, scraping `/metrics`."""

from __future__ import annotations

import time
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

SERVICE = "retrieval.v1.RetrievalService"


def request(k: int, user: str = "u1") -> pb.RetrieveCandidatesRequest:
    """A single request; k = 0 or k > max_k is INVALID_ARGUMENT."""
    return pb.RetrieveCandidatesRequest(user_id=user, num_candidates=k)


def call(stub: pb_grpc.RetrievalServiceStub, k: int) -> grpc.StatusCode:
    """One RetrieveCandidates call; returns its status code."""
    try:
        stub.RetrieveCandidates(request(k), timeout=30)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Samples of http://127.0.0.1:port/metrics by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def settled_scrape(port: int, method: str = "RetrieveCandidates", timeout_s: float = 10.0) -> Samples:
    """`scrape(port)` once every started call of `method` is counted as handled.

    The server counts a call as handled after its status is on the wire, so a client can hold its
    answer (or error) a moment before `grpc_server_handled_total` moves; scraping at once is a race.
    """
    started_name, handled_name = "grpc_server_started_total", "grpc_server_handled_total"
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(port)
        of_method = {name: 0.0 for name in (started_name, handled_name)}
        for (name, labels), count in samples.items():
            if name in of_method and dict(labels).get("grpc_method") == method:
                of_method[name] += count
        if of_method[started_name] == of_method[handled_name] or time.monotonic() > deadline:
            return samples
        time.sleep(0.01)
