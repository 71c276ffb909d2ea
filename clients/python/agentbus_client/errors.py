"""Errors raised by the client; an API error carries the server's JSON error body.

The server answers every 4xx with ``{"error": code, "detail": text, "fields"?: {path:
[problems]}}``; :class:`ApiError` keeps those three as attributes, so a caller can
branch on ``exc.error`` or show ``exc.fields`` next to the input that was wrong.
"""

from __future__ import annotations

from typing import Any


class AgentbusError(Exception):
    """Base of every error this package raises."""


class TransportError(AgentbusError):
    """The server could not be reached, or the connection broke mid-request."""


class ApiError(AgentbusError):
    """The server answered with an error status (its JSON error in ``error``, ``detail``, ``fields``)."""

    def __init__(self, status: int, body: dict[str, Any] | None = None) -> None:
        body = body if isinstance(body, dict) else {}
        self.status = status
        self.body = body
        self.error: str = str(body.get("error") or f"http_{status}")
        self.detail: str = str(body.get("detail") or "")
        fields = body.get("fields")
        self.fields: dict[str, list[str]] = fields if isinstance(fields, dict) else {}
        super().__init__(f"HTTP {status} {self.error}: {self.detail}".rstrip(": "))


class AuthenticationError(ApiError):
    """401: no token, or one the server does not know."""


class PermissionDeniedError(ApiError):
    """403: authenticated, but not allowed (staff-only operations)."""


class NotFoundError(ApiError):
    """404: no such object, or one that belongs to someone else."""


class ConflictError(ApiError):
    """409: the object is not in a state that allows this (a finished job, a decided review)."""


class RateLimitedError(ApiError):
    """429: too many requests or too many unfinished jobs; ``retry_after`` in seconds if given."""

    def __init__(self, status: int, body: dict[str, Any] | None = None, retry_after: float | None = None) -> None:
        super().__init__(status, body)
        self.retry_after = retry_after


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
}


def api_error(status: int, body: Any, headers: Any = None) -> ApiError:
    """The right ApiError subclass for a status code."""
    if status == 429:
        retry_after = None
        raw = (headers or {}).get("retry-after") if headers is not None else None
        if raw:
            try:
                retry_after = float(raw)
            except ValueError:
                retry_after = None
        return RateLimitedError(status, body, retry_after)
    return _BY_STATUS.get(status, ApiError)(status, body)
