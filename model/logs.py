"""Log configuration of the console scripts (`retrieval-serve`, its workers, `retrieval-train`): plain text or one
JSON object per line (`--log-format json`). Standard library only until JSON is asked for; `service.logs` builds on it.

JSON lines come from python-json-logger, chosen over structlog because every module here logs through the
standard `logging` module with %-style arguments: python-json-logger is only a `Formatter`, so no call site
changes and the spawned worker processes configure it the same way; structlog would need its own processor
chain plus a bridge from the standard library to give the same result.

Every record gets `request_id` (from `REQUEST_ID`, set per call by the server's `service.call_log`; empty in
training) and, while an
OpenTelemetry span is current, `trace_id` and `span_id` (hex, as trace back-ends show them). The JSON fields:
`time`, `level`, `logger`, `message`, `process`, then those and any `extra=` of the call.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# The request_id of the call being handled ("" outside a call or when the caller sent none).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class CallContextFilter(logging.Filter):
    """Adds `request_id`, `trace_id` and `span_id` (empty when unknown) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.trace_id, record.span_id = current_trace_ids()
        return True


def current_trace_ids() -> tuple[str, str]:
    """The current OpenTelemetry span's trace and span id in hex, or ("", "") without a span or the API."""
    trace = sys.modules.get("opentelemetry.trace")  # only where the [otel] extra is installed and in use
    if trace is None:
        return "", ""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def formatter(log_format: LogFormat, prefix: str = "", *, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    """The formatter of `log_format`; `prefix` (e.g. "worker-1 ") starts each text line of `text_format`."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d %(request_id)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(text_format.replace("%(name)s", prefix + "%(name)s"))


def configure_logging(
    level: str, log_format: LogFormat = "text", *, prefix: str = "", text_format: str = TEXT_FORMAT
) -> None:
    """One stderr handler on the root logger with the call-context filter; replaces earlier handlers."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format, prefix, text_format=text_format))
    handler.addFilter(CallContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
