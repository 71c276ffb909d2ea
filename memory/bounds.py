"""What one user's memory writes may cost the web process and the database.

Writes are embedded on commit, inside the request, so a request's cost grows with its
text: 500 texts of 2,000 characters took about a minute of web CPU. The bounds:

- ``AGENTBUS_MEMORY_MAX_REQUEST_CHARS`` (default 100,000): text one store/batch request may
  carry, about 5 s of embedding on one core; larger imports go in several requests;
- ``AGENTBUS_MEMORY_MAX_PER_USER`` (default 100,000): live memories a user may hold;
- ``AGENTBUS_MEMORY_WRITE_RATE`` (default 120/min): store/batch requests per user, counted in
  Redis like the API's other rate limits (a 429 with ``Retry-After``).
"""

from __future__ import annotations

from django.conf import settings

from core.errors import QuotaExceeded, TooLarge
from core.throttling import UserRateThrottle


def request_text_check(*, texts: list[str], field: str) -> None:
    limit = settings.AGENTBUS_MEMORY_MAX_REQUEST_CHARS
    total = sum(len(t) for t in texts)
    if total > limit:
        raise TooLarge(
            f"{total} characters of text in one request; at most {limit} (send several requests).",
            code="request_too_costly",
            fields={field: [f"at most {limit} characters of text per request"]},
        )


def quota_check(*, owner, adding: int) -> None:
    from memory.models import Memory

    limit = settings.AGENTBUS_MEMORY_MAX_PER_USER
    held = Memory.objects.filter(owner=owner, deleted_at__isnull=True).count()
    if held + adding > limit:
        raise QuotaExceeded(
            f"You hold {held} memories; at most {limit}. Delete some first.",
            code="memory_quota",
        )


class MemoryWriteThrottle(UserRateThrottle):
    """Store and batch requests per user (AGENTBUS_MEMORY_WRITE_RATE)."""

    scope = "memory_write"

    def get_rate(self) -> str:
        return settings.AGENTBUS_MEMORY_WRITE_RATE

    def get_cache_key(self, request, view) -> str | None:
        key = super().get_cache_key(request, view)
        return f"memory-write:{key}" if key else None
