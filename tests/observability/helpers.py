"""Shared helpers of the observability tests: traffic over plain stubs, scraping `/metrics`."""

from __future__ import annotations

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


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of http://127.0.0.1:port/metrics by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))
