"""How log records are written: readable lines (`make run`), or one JSON object per line (`LOG_FORMAT=json`,
which `make serve` sets for its children so a log collector can read every line).

One logging configuration (a `logging.config.dictConfig` dictionary) for the API, which hands it to
uvicorn (uvicorn applies it in each worker process it spawns), and for the scheduler, which applies it
itself. JSON lines come from python-json-logger: `time` (UTC, ISO 8601), `level`, `logger`, `message`,
and `exc_info` when there is a traceback. Messages never carry personal data or secrets: callers log
identifiers and error types (see services/, api/errors.py).
"""

from __future__ import annotations

import logging.config
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "{levelname}{name}{message}"
JSON_RENAMES = {"levelname": "level", "name": "logger"}
# Record attributes never written as fields: the standard ones, and uvicorn's message with terminal colours.
JSON_LEFT_OUT = [*RESERVED_ATTRS, "color_message"]


def logging_config(log_format: LogFormat, *, level: str = "INFO") -> dict[str, Any]:
    """The dictConfig for `log_format`: the root logger and uvicorn's own loggers to standard output.
    uvicorn's access log gets no handler: the API writes its own request line (api/request_log.py)."""
    if log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "style": "{",
            "rename_fields": dict(JSON_RENAMES),
            "timestamp": "time",
            "reserved_attrs": list(JSON_LEFT_OUT),
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "chekar", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chekar": formatter},
        "handlers": {"stdout": handler},
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {
            # uvicorn's loggers reach the root's handler; their own default handlers are not installed.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "httpx": {"level": "WARNING"},  # not a line per PortOne request
            "httpcore": {"level": "WARNING"},
        },
    }


def configure_logging(log_format: LogFormat, *, level: str = "INFO") -> None:
    """Apply `logging_config` to this process (the scheduler; the API's workers get it from uvicorn)."""
    logging.config.dictConfig(logging_config(log_format, level=level))
