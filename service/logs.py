"""Log configuration of the server processes: the shared conventions of `model.logs` (text or JSON lines with
`request_id`, `trace_id` and `span_id`), re-exported under the names the server modules use."""

from __future__ import annotations

from model.logs import (
    LOG_FORMATS,
    REQUEST_ID,
    TEXT_FORMAT,
    CallContextFilter,
    LogFormat,
    configure_logging,
    current_trace_ids,
    formatter,
)

__all__ = [
    "LOG_FORMATS",
    "REQUEST_ID",
    "TEXT_FORMAT",
    "CallContextFilter",
    "LogFormat",
    "configure_logging",
    "current_trace_ids",
    "formatter",
]
