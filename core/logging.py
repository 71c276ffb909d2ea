"""Structured logs: one JSON object per line, carrying the job and task it is about.

``LOG_FORMAT=json`` (settings.LOGGING) switches every process to ``JsonFormatter``;
``plain`` (the default on a laptop) keeps the readable line. The ids come from a
context set around a unit of work (``log_context(job_id=..., task_id=...)``: the worker
around each task attempt, the orchestrator around each job it advances), so a log
search for one job finds what web, orchestrator and workers said about it, including
lines from libraries that know nothing about jobs. ``extra={"job_id": ...}`` on a single
call works too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import traceback
from datetime import UTC, datetime

# Never mutated: log_context sets a new dict, so the shared empty default is safe.
_context: contextvars.ContextVar[dict] = contextvars.ContextVar("agentbus_log_context", default={})  # noqa: B039

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def log_context(**ids):
    """Attach ids (job_id, task_id, attempt, ...) to every log line inside the block."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "process": record.process,
        }
        entry.update(_context.get())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info))[-8000:]
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """The readable line, with the context's ids appended when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _context.get()
        if ids:
            line += " [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]"
        return line
