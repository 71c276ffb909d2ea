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
    """Raised by services for a request that cannot be done; mapped to a 4xx."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        status_code: int = status.HTTP_400_BAD_REQUEST,
        fields: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.fields = fields or {}


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
        return error_response(exc.code, exc.message, exc.status_code, exc.fields)
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
    # A parser's error may name the refused field (agentbus_site.parsers.JSONPolicyParseError).
    return error_response(code, str(detail), response.status_code, getattr(exc, "fields", None), headers=headers)
