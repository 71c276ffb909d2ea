"""Template filters for the dashboard pages."""

from __future__ import annotations

import json

from django import template

register = template.Library()

PRETTY_LIMIT = 20_000


@register.filter
def pretty_json(value) -> str:
    """JSON indented for reading; long values are cut (the API returns them whole)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= PRETTY_LIMIT else text[:PRETTY_LIMIT] + "\n… (truncated)"


@register.filter
def seconds(value) -> str:
    """A duration in seconds, short: 0.42s, 12.3s, 4m 05s, 2h 03m."""
    if value is None:
        return "—"
    value = float(value)
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{int(value // 60)}m {int(value % 60):02d}s"
    return f"{int(value // 3600)}h {int(value % 3600 // 60):02d}m"


@register.filter
def duration_between(start, end) -> str:
    if not start or not end:
        return "—"
    return seconds((end - start).total_seconds())


@register.filter
def status_label(value) -> str:
    return str(value).replace("_", " ")


_WAITING = {
    "capacity": "waiting for a free worker",
    "priority": "waiting behind higher priorities",
    "fair_share": "waiting: other users' turn (fair share)",
    "concurrency_key": "waiting: its concurrency key runs its limit",
    "rate_limit": "waiting: its agent's rate limit",
}


@register.filter
def waiting_label(task) -> str:
    """Why a queued task has not started (jobs.scheduling), or "" once it was sent."""
    if task.status != "queued" or task.sent_at is not None:
        return ""
    return _WAITING.get(task.wait_reason or "capacity", "waiting")


@register.filter
def age(value) -> str:
    """How long ago, short: 12s, 5m, 3h, 2d."""
    if not value:
        return "—"
    from django.utils import timezone

    s = max(0, int((timezone.now() - value).total_seconds()))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m ago"
    return f"{s // 86400}d ago"
