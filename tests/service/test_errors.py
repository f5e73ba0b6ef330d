"""Machine-readable errors: google.rpc.Status details decoded by the client, and gRPC's own retries of UNAVAILABLE."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from service.client import RetrievalClient, build_request, error_details
from service.errors import InvalidRequest, Overloaded, ShuttingDown, rich_status
from tests.observability.helpers import settled_scrape, value
from tests.service.helpers import MODEL, ServerThread, server_config

RETRIEVE = {"grpc_service": "retrieval.v1.RetrievalService", "grpc_method": "RetrieveCandidates", "grpc_type": "unary"}


def _handled(server: ServerThread, code: str) -> float:
    assert server.handles is not None and server.handles.metrics_port
    samples = settled_scrape(server.handles.metrics_port)
    return value(samples, "grpc_server_handled_total", **RETRIEVE, grpc_code=code) or 0.0


def test_an_invalid_field_comes_with_its_reason_and_field_violation_and_is_not_retried(bundle_path: Path) -> None:
    with ServerThread(server_config(bundle_path.parent.parent, metrics_port=0)) as server:
        with RetrievalClient(server.target) as client, pytest.raises(grpc.RpcError) as error:
            client.retrieve("u1", 0)
        details = error_details(error.value)
        assert (details.code, details.reason) == ("INVALID_ARGUMENT", "INVALID_FIELD")
        assert details.field_violations == (("num_candidates", "must be in [1, 50], got 0"),)
        assert details.retry_delay_s is None and details.message.startswith("num_candidates:")
        assert _handled(server, "InvalidArgument") == 1  # one attempt: retrying would not help


def test_no_model_loaded_is_unavailable_with_retry_info_and_retried_by_grpc(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    (models_dir / MODEL).mkdir(parents=True)
    config = server_config(models_dir, metrics_port=0)
    with ServerThread(config).start(wait_ready=False) as server:
        with RetrievalClient(server.target, retries=False) as once, pytest.raises(grpc.RpcError) as error:
            once.retrieve("u1", 3)
        details = error_details(error.value)
        assert (details.code, details.reason, details.retry_delay_s) == ("UNAVAILABLE", "NO_MODEL_LOADED", 1.0)
        assert _handled(server, "Unavailable") == 1
        started = time.monotonic()
        with RetrievalClient(server.target) as retrying, pytest.raises(grpc.RpcError) as retried:
            retrying.retrieve("u1", 3)
        assert error_details(retried.value).reason == "NO_MODEL_LOADED"
        assert _handled(server, "Unavailable") == 1 + 4  # the service config's four attempts
        assert time.monotonic() - started >= 3 * 1.0  # each retry waited the server's pushback (RetryInfo)


def test_each_error_kind_carries_its_stable_reason_and_retry_delay() -> None:
    cases = {
        "QUEUE_FULL": (Overloaded("request queue full"), grpc.StatusCode.RESOURCE_EXHAUSTED, "50"),
        "SHUTTING_DOWN": (ShuttingDown("server is shutting down"), grpc.StatusCode.UNAVAILABLE, "100"),
        "INVALID_FIELD": (InvalidRequest("k", "bad"), grpc.StatusCode.INVALID_ARGUMENT, None),
        "INTERNAL": (RuntimeError("boom"), grpc.StatusCode.INTERNAL, None),
    }
    for reason, (error, code, pushback) in cases.items():
        got_code, _, trailers = rich_status(error)
        metadata = dict(trailers)
        assert got_code == code and metadata.get("grpc-retry-pushback-ms") == pushback
        assert reason.encode() in metadata["grpc-status-details-bin"]  # type: ignore[operator]
    assert rich_status(RuntimeError("secret"))[1] == "internal error: RuntimeError"  # no internals leak


def test_an_integer_for_a_numeric_feature_is_accepted_by_server_and_client(server: ServerThread) -> None:
    """The client trap of issue 16: `features={"age": 30}` used to send an int64 and get INVALID_ARGUMENT."""
    with RetrievalClient(server.target) as client:
        as_int = client.retrieve("u1", 5, features={"age": 30})
        as_float = client.retrieve("u1", 5, features={"age": 30.0})
        raw_int = client.call(client.stub.RetrieveCandidates, build_request("u1", 5, features={"age": 30}))
    assert [c.item_id for c in as_int.candidates] == [c.item_id for c in as_float.candidates]
    assert [c.item_id for c in raw_int.candidates] == [c.item_id for c in as_float.candidates]  # server-side too
