"""One error shape for the whole API, and the one application error services raise.

Every 4xx body looks like::

    {"error": "validation_error", "detail": "Invalid input.",
     "fields": {"plan.tasks[1].agent": ["unknown agent 'nope'"]}}

``fields`` maps a dotted path into the request body to its problems, so a client (or a
person reading curl output) sees exactly where the input is wrong.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """The one error services raise for a request that cannot be done: bad input by
    default. Services say *what kind* of failure it is by raising a subclass below; only
    ``api_exception_handler`` knows which HTTP status each kind answers."""

    def __init__(self, message: str, *, code: str = "invalid", fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fields = fields or {}


class NotFound(ApplicationError):
    """No such object, or not the caller's: the two are told apart to nobody."""


class Conflict(ApplicationError):
    """The object is not in a state that allows this (already finished, decided, claimed)."""


class Unprocessable(ApplicationError):
    """Well-formed, but contradicts an earlier request (an Idempotency-Key reused)."""


class QuotaExceeded(ApplicationError):
    """The caller holds as much as it may at once (unfinished jobs, memories)."""


class Forbidden(ApplicationError):
    """The caller may not do this at all (staff only)."""


class Gone(ApplicationError):
    """The object's data was purged (retention); what was kept is still described."""


class TooLarge(ApplicationError):
    """The request asks for more work at once than the server takes (a memory batch)."""


class Unavailable(ApplicationError):
    """A service this request needs is down (an embeddings endpoint); try again later."""


# The one mapping from an application error's kind to HTTP (most specific class first).
HTTP_STATUS = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Unprocessable: status.HTTP_422_UNPROCESSABLE_ENTITY,
    QuotaExceeded: status.HTTP_429_TOO_MANY_REQUESTS,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Gone: status.HTTP_410_GONE,
    TooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    ApplicationError: status.HTTP_400_BAD_REQUEST,
}


def http_status_of(exc: ApplicationError) -> int:
    return next(code for kind, code in HTTP_STATUS.items() if isinstance(exc, kind))


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error structure into ``{"a.b[2].c": ["message"]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                path = prefix or "body"
            elif isinstance(key, int):  # DRF reports list items as {index: errors}
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for k, v in flatten_errors(value, path).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "body"] = [str(item) for item in detail]
        else:
            for index, value in enumerate(detail):
                if value in ({}, []):
                    continue
                for k, v in flatten_errors(value, f"{prefix}[{index}]").items():
                    out.setdefault(k, []).extend(v)
    else:
        out[prefix or "body"] = [str(detail)]
    return out


def error_response(
    code: str, detail: str, status_code: int, fields: dict | None = None, headers: dict | None = None
) -> Response:
    body: dict[str, Any] = {"error": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return Response(body, status=status_code, headers=headers)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return error_response(exc.code, exc.message, http_status_of(exc), exc.fields)
    if isinstance(exc, RequestDataTooBig):
        return error_response("request_too_large", "The request body is larger than the server accepts.", 413)
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        first = next(iter(fields.items()), ("body", ["Invalid input."]))
        return error_response("validation_error", f"{first[0]}: {first[1][0]}", 400, fields)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
    code = getattr(getattr(exc, "detail", None), "code", None) or getattr(exc, "default_code", "error")
    headers = {k: v for k, v in response.headers.items() if k in ("Retry-After", "WWW-Authenticate", "Allow")}
    # A parser's error may name the refused field (core.parsers.JSONPolicyParseError).
    return error_response(code, str(detail), response.status_code, getattr(exc, "fields", None), headers=headers)
