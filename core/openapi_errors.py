"""Every operation in the OpenAPI schema documents the error responses it can give.

Some 4xx answers come from machinery around the view rather than the view itself: the
throttles (429) on every call, authentication (401) and permissions (403) on every
protected one, the body size limit (413) on every one with a body, input validation
(400) and another user's or an unknown object, or a page past the end (404), nearly
everywhere. Listing them view by view would be forgotten on the next view, so this
postprocessing hook adds the missing ones, all in the one error shape. (Found by the
schemathesis run in tests/security, which checks every status code is documented.)
"""

from __future__ import annotations

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A stable, machine-readable code."},
        "detail": {"type": "string", "description": "What is wrong, for a person."},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Dotted path into the request (or a header/parameter name) to its problems.",
        },
    },
    "required": ["error", "detail"],
}

_DESCRIPTIONS = {
    "400": "The input is invalid; `fields` says where.",
    "401": "No or invalid credentials.",
    "403": "Authenticated, but not allowed (staff-only, or a session request without a CSRF token).",
    "404": "No such object for this user (another user's object included), or a page past the end.",
    "409": "The object's state does not allow this now.",
    "413": "The request body is larger than the server accepts.",
    "429": "Too many requests (see `Retry-After`), or too many unfinished jobs.",
}
_METHODS = ("get", "post", "put", "patch", "delete")


def error_responses_everywhere(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", _ERROR_SCHEMA)
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in result.get("paths", {}).values():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            codes = ["400", "404", "429"]
            if any(requirement for requirement in operation.get("security", [{"default": []}])):
                codes += ["401", "403"]
            if "requestBody" in operation:
                codes.append("413")
            if method != "get":
                codes.append("409")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {"description": _DESCRIPTIONS[code], "content": content})
            for parameter in operation.get("parameters", []):
                _document_parameter(parameter)
    return result


def _document_parameter(parameter: dict) -> None:
    # DRF reads an empty optional query value (``?status=``) as absent.
    if parameter.get("in") == "query" and not parameter.get("required"):
        parameter["allowEmptyValue"] = True
    # POST /jobs checks the key's length (jobs/views.py); say so.
    if parameter.get("in") == "header" and parameter.get("name", "").lower() == "idempotency-key":
        parameter.setdefault("schema", {"type": "string"}).update(minLength=1, maxLength=255)
