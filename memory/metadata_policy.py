"""What memory metadata may hold, checked when it is stored rather than when it is indexed.

Chroma stores a memory's scalar metadata beside its vector (``memory.services.chroma_metadata``)
and accepts a string, a bool, a finite float or an integer that fits in 64 bits. A value it
refuses used to be stored in PostgreSQL (jsonb takes any number) and then fail the whole
indexing batch, which stopped ``memory_reindex`` and the after-write repair pass for every
user. Now the API and ``memory_store_many`` refuse such a value up front, and the indexer
skips (and reports) a row stored before this check existed.
"""

from __future__ import annotations

import math
from typing import Any

from core.errors import ApplicationError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def chroma_scalar_ok(value: Any) -> bool:
    """Whether Chroma accepts ``value`` as a metadata value."""
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def metadata_problems(metadata: dict) -> dict[str, str]:
    """``{key: problem}`` for each scalar value Chroma would refuse (objects, arrays and
    null are kept in PostgreSQL only and never sent to Chroma, so they are fine)."""
    problems = {}
    for key, value in metadata.items():
        if isinstance(value, dict | list) or value is None:
            continue
        if not chroma_scalar_ok(value):
            problems[key] = "must be a string, a boolean, a finite number or an integer within 64 bits"
    return problems


def metadata_check(metadata: dict | None, *, field: str = "metadata") -> None:
    """Raise a 400 naming ``<field>.<key>`` for metadata the index cannot hold."""
    problems = metadata_problems(metadata or {})
    if problems:
        fields = {f"{field}.{key}": [problem] for key, problem in problems.items()}
        first = next(iter(fields))
        raise ApplicationError(f"{first}: {fields[first][0]}", code="invalid_metadata", fields=fields)
