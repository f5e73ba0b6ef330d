"""service/call_log.py and service/logs.py: every failed call logs its request_id and code; JSON log lines."""

from __future__ import annotations

import json
import logging
import time

import grpc
import pytest

from service.client import RetrievalClient
from service.logs import REQUEST_ID, CallContextFilter, formatter
from tests.service.helpers import ServerThread


def test_a_failed_call_logs_its_request_id_and_code(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="service.call_log")
    with RetrievalClient(server.target) as client, pytest.raises(grpc.RpcError):
        client.retrieve("u1", 0, request_id="req-7")
    # The server logs the failed call after its answer is on the wire: wait for the line (bounded), then check it.
    deadline = time.monotonic() + 10.0
    while not [r for r in caplog.records if r.name == "service.call_log"] and time.monotonic() < deadline:
        time.sleep(0.01)
    (record,) = [r for r in caplog.records if r.name == "service.call_log"]
    assert record.levelno == logging.WARNING
    assert (record.grpc_code, record.grpc_method) == (  # type: ignore[attr-defined]
        "INVALID_ARGUMENT",
        "/retrieval.v1.RetrievalService/RetrieveCandidates",
    )
    assert "request_id=req-7" in record.getMessage() and "num_candidates" in record.getMessage()


def test_json_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("service.x", logging.INFO, __file__, 1, "answered k=%d", (5,), None)
    token = REQUEST_ID.set("abc")
    try:
        CallContextFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(formatter("json").format(record))
    assert (line["level"], line["logger"], line["message"], line["request_id"]) == (
        "INFO",
        "service.x",
        "answered k=5",
        "abc",
    )
    assert line["trace_id"] == "" and line["span_id"] == "" and "time" in line
