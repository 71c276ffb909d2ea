"""Reads on reviews, scoped to those the caller may decide (staff: all).

A user may decide a review when they own its job, are its assignee, or belong to its
reviewer group. Anyone else gets a 404 for it, never a 403.
"""

from __future__ import annotations

import difflib
import json

from django.db.models import Q, QuerySet
from django.http import Http404

from jobs.models import Review, ReviewDecision, ReviewKind, Task


def reviews_visible_to(user) -> QuerySet[Review]:
    reviews = Review.objects.all()
    if user.is_staff:
        return reviews
    return reviews.filter(Q(job__owner=user) | Q(assignee=user) | Q(reviewer_group__in=user.groups.values("id")))


def review_list(*, user, status: str | None = None, kind: str | None = None, job_id=None) -> QuerySet[Review]:
    """Newest first (index review_status_created), with what a list row shows."""
    reviews = reviews_visible_to(user).select_related(
        "job", "task", "assignee", "reviewer_group", "claimed_by", "decided_by"
    )
    if status:
        reviews = reviews.filter(status=status)
    if kind:
        reviews = reviews.filter(kind=kind)
    if job_id:
        reviews = reviews.filter(job_id=job_id)
    return reviews.order_by("-created_at")


def review_get(*, user, review_id) -> Review:
    review = (
        reviews_visible_to(user)
        .select_related("job", "job__owner", "task", "assignee", "reviewer_group", "claimed_by", "decided_by")
        .filter(pk=review_id)
        .first()
    )
    if review is None:
        raise Http404("No such review.")
    return review


def review_history(*, review: Review) -> list:
    return list(review.actions.select_related("actor").order_by("at", "id"))


def review_upstream(*, review: Review) -> dict:
    """The outputs of the task's dependencies, as the agent sees them."""
    if review.task is None or not review.task.depends_on:
        return {}
    return dict(Task.objects.filter(job_id=review.job_id, key__in=review.task.depends_on).values_list("key", "output"))


def review_diff(*, review: Review) -> str:
    """A unified diff of the proposed value and the edited one ("" unless edited)."""
    if review.decision != ReviewDecision.EDIT:
        return ""
    return json_diff(review.proposed, review.decided_value, label=_label(review))


def json_diff(before, after, *, label: str = "value") -> str:
    a = pretty(before).splitlines(keepends=True)
    b = pretty(after).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=f"proposed {label}", tofile=f"edited {label}"))


def pretty(value) -> str:
    """Text as text, anything else as indented JSON."""
    if isinstance(value, str):
        return value if value.endswith("\n") else value + "\n"
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _label(review: Review) -> str:
    return {ReviewKind.PLAN: "plan", ReviewKind.BEFORE: "input", ReviewKind.AFTER: "output"}.get(review.kind, "value")
