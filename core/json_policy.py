"""One policy for every JSON value a client sends: request bodies and JSON query parameters.

Python's ``json`` accepts more than a database or an index can hold, and more than a
server should spend time on, so each of these was a 500 somewhere:

- nesting deeper than the C scanner's recursion limit raises ``RecursionError`` (not a
  ``ValueError``), which no parser caught, even on ``/auth/token`` before any login;
- ``1e999`` parses to ``inf`` and ``NaN``/``Infinity`` are accepted as literals, and
  PostgreSQL refuses the ``Infinity`` Django writes into a float or JSON column;
- integers have no bound, and Chroma (int64) and JavaScript clients (2^53) do;
- NUL and unpaired surrogates, which PostgreSQL's text and jsonb refuse.

The policy, documented in docs/readme/security.md:

- at most ``AGENTBUS_JSON_MAX_DEPTH`` (default 64) nested arrays/objects;
- numbers finite: no ``NaN``, ``Infinity``, nor a float that overflows to infinity;
- integers within ``|n| <= 2**53 - 1`` (``MAX_SAFE_INTEGER``, exact in every JSON client);
- strings and keys without NUL and without unpaired surrogates.

A violation is a :class:`JSONPolicyError` naming the path of the offending value
(``plan.tasks[0].input.n``), which the API turns into a 400 in its error shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings

MAX_SAFE_INTEGER = 2**53 - 1


class JSONPolicyError(ValueError):
    """A JSON value the policy refuses; ``path`` names where (``"body"`` for the top)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def max_depth() -> int:
    return getattr(settings, "AGENTBUS_JSON_MAX_DEPTH", 64)


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]" if path else f"[{key}]"
    return f"{path}.{key}" if path else str(key)


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "may not contain NUL characters (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "may not contain unpaired surrogates"
    return None


def json_check(value: Any, *, root: str = "") -> None:
    """Raise :class:`JSONPolicyError` if ``value`` (parsed JSON) breaks the policy.

    An explicit stack, not recursion, so a deep value cannot overflow this check too."""
    limit = max_depth()
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                raise JSONPolicyError(path or "body", problem)
        elif isinstance(item, int):
            if abs(item) > MAX_SAFE_INTEGER:
                raise JSONPolicyError(path or "body", f"integers must be within +/-{MAX_SAFE_INTEGER} (2^53-1)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise JSONPolicyError(path or "body", "numbers must be finite (no NaN, Infinity or overflow)")
        elif isinstance(item, (dict, list)):
            if depth >= limit:
                raise JSONPolicyError(path or "body", f"nested deeper than {limit} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str):
                    problem = _string_problem(key)
                    if problem:
                        raise JSONPolicyError(_child(path, "<key>"), f"keys {problem}")
                stack.append((child, _child(path, key), depth + 1))


def _keep_constant(name: str) -> float:
    # NaN/Infinity literals become floats here so that json_check reports them with
    # their path, like a 1e999 that overflowed.
    return float(name.replace("Infinity", "inf"))


def json_loads(text: str | bytes, *, root: str = "") -> Any:
    """``json.loads`` under the policy: ``ValueError`` for malformed JSON,
    :class:`JSONPolicyError` (a ``ValueError`` too) for JSON the policy refuses."""
    try:
        value = json.loads(text, parse_constant=_keep_constant)
    except RecursionError:
        raise JSONPolicyError(root or "body", f"nested deeper than {max_depth()} levels") from None
    json_check(value, root=root)
    return value
