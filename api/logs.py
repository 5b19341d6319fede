"""Server logs: one line per event, JSON objects by default (`--log-format plain` for text),
each carrying the id of the request it belongs to.

The request id comes from the client's `X-Request-ID` header when it is a plain token, or
is made up; `api.middleware.RequestContext` sets it for the request's whole context, every
answer repeats it in `X-Request-ID`, and error bodies quote it, so that a user's report
finds the server's log lines (which alone hold the details of an internal error).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"

#: The id of the request (HTTP or WebSocket) whose code is running; None outside one.
REQUEST_ID: ContextVar[str | None] = ContextVar("coarse_loftr_request_id", default=None)

# A client's id is kept only when it is a short token that cannot forge log lines.
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged too.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message", "request_id"}


def request_id_from(header: bytes | None) -> str:
    """The client's X-Request-ID when it is a plain token, else a fresh random id."""
    if header:
        text = header.decode("latin-1")
        if _TOKEN.fullmatch(text):
            return text
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Gives every record a `request_id` attribute (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", "request_id", extra fields..., "exception"}."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        return f"{line} {json.dumps(extra, default=str)}" if extra else line


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and the service: every logger to stderr in
    `log_format` ("json" or "plain"). uvicorn's own access log is off: the service writes
    one `request` line per answer, with its id, route, status and milliseconds."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"()": PlainFormatter}
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "default",
        "filters": ["request_id"],
    }
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "coarse_loftr": {"handlers": ["default"], "level": upper, "propagate": False},
        },
    }
