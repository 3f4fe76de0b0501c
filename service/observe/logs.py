"""Log records as JSON lines (or plain text), and the served process's logging setup.

Every record is one line on stderr: `timestamp`, `level`, `logger`, `message`,
the request's `request_id` when logged while answering one, `exception` when
there is one, and any structured `fields` the record carries (the access log's
method, route, path, status, duration_ms, client). Nothing here reads request
headers or bodies: what is logged is only what a caller put in `fields`.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from service.config import Logging

ACCESS_LOGGER = "portal_authz.access"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# One encoder for every line (json.dumps with options would build a new one per call).
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _request_id() -> str | None:
    from service.observe.http import current  # imported late: http imports this module's ACCESS_LOGGER

    exchange = current()
    return exchange.request_id if exchange is not None else None


_second: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds; the part up to the second is formatted once per second."""
    global _second
    whole = int(record.created)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"timestamp": _timestamp(record), "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        elif (request_id := _request_id()) is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _encode(entry)


class TextFormatter(logging.Formatter):
    """`2026-01-05T09:00:00.000Z INFO logger: message key=value ...` for people reading a terminal."""

    def __init__(self):
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {super().format(record)}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        elif (request_id := _request_id()) is not None:
            line += f" request_id={request_id}"
        return line


def formatter_for(settings: Logging) -> logging.Formatter:
    return JsonFormatter() if settings.format == "json" else TextFormatter()


def _is_ours(handler: logging.Handler) -> bool:
    return isinstance(handler.formatter, (JsonFormatter, TextFormatter))


def configure(settings: Logging) -> None:
    """The served process: every record through one stderr handler in the configured format and level."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(settings))
    root.addHandler(handler)
    root.setLevel(LEVELS[settings.level])
    logging.getLogger("alembic").setLevel(max(LEVELS[settings.level], logging.WARNING))


def is_configured() -> bool:
    return any(_is_ours(handler) for handler in logging.getLogger().handlers)


def gunicorn_logconfig(settings: Logging) -> dict:
    """gunicorn's `logconfig_dict`: its own records (booting, worker timeouts) as lines of the same format."""
    formatter = {"()": f"{__name__}.{'JsonFormatter' if settings.format == 'json' else 'TextFormatter'}"}
    level = settings.level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "service",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            # The service writes its own access log (service.observe.http); gunicorn's is off.
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            "alembic": {"level": "WARNING"},
        },
    }
