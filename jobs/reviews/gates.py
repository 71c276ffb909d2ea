"""Review rows: open a gate, close the gates of a job that ended, and push every change
to the live inboxes.

This is the bottom of the reviews package: the job lifecycle (jobs.lifecycle) calls it
when it holds work at a gate or ends a job, and it writes only Review and ReviewAction
rows, never a Job or Task status. What a human's decision does lives in
jobs.reviews.decisions.

Gate options come from the plan task's ``gate`` object: ``assignee`` (a username),
``group`` (a Django group name), ``deadline`` (seconds), ``default`` (approve, reject or
fail: what the orchestrator applies when the deadline passes) and ``max_rejections``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core.channels import group_send_nowait
from jobs.events import EventType, NewEvent
from jobs.models import Review, ReviewAction, ReviewDecision, ReviewDefault, ReviewKind, ReviewStatus, Task

logger = logging.getLogger(__name__)

# Decisions that let the gated work go on (a deadline's "approve" is recorded as approve).
PASSING = (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.RESPOND)

MAX_QUESTION_CHARS = 4000
MAX_OPTIONS = 50


def gate_options(plan: dict | None, key: str | None) -> dict:
    """The ``gate`` object of a plan task (empty for the plan itself or without one)."""
    if not plan or key is None:
        return {}
    for spec in plan.get("tasks", []):
        if spec.get("key") == key:
            return dict(spec.get("gate") or {})
    return {}


def review_open(
    *,
    job_id,
    kind: str,
    proposed: Any,
    task: Task | None = None,
    attempt: int = 0,
    options: dict | None = None,
    events: list[NewEvent],
) -> Review:
    """Create a pending review with its "opened" audit row; its event joins ``events``
    (the lifecycle's change, appended with the rest). Broadcast to reviewers on commit."""
    options = options or {}
    now = timezone.now()
    deadline_seconds = options.get("deadline") or settings.AGENTBUS_REVIEW_DEADLINE or None
    review = Review.objects.create(
        job_id=job_id,
        task=task,
        kind=kind,
        attempt=attempt,
        proposed=proposed,
        assignee=_user_named(options.get("assignee")),
        reviewer_group=_group_named(options.get("group")),
        deadline=now + timedelta(seconds=deadline_seconds) if deadline_seconds else None,
        default_outcome=options.get("default") or ReviewDefault.REJECT,
    )
    ReviewAction.objects.create(review=review, action="opened", after=proposed)
    event = NewEvent(
        EventType.REVIEW_OPENED,
        task_id=task.id if task else None,
        status=ReviewStatus.PENDING,
        data={
            "review": str(review.id),
            "kind": kind,
            "key": task.key if task else None,
            "assignee": options.get("assignee"),
            "group": options.get("group"),
            "deadline": review.deadline.isoformat() if review.deadline else None,
            "default_outcome": review.default_outcome,
        },
    )
    events.append(event)
    reviews_publish_on_commit([review.id])
    return review


def _user_named(username: str | None):
    if not username:
        return None
    return get_user_model().objects.filter(username=username).first()


def _group_named(name: str | None):
    if not name:
        return None
    return Group.objects.filter(name=name).first()


def question_validate(question: object, options: object) -> tuple[str, list[str] | None]:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("a question must be a non-empty string")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"a question must be at most {MAX_QUESTION_CHARS} characters")
    if options is None:
        return question, None
    if (
        not isinstance(options, (list, tuple))
        or not options
        or len(options) > MAX_OPTIONS
        or not all(isinstance(o, str) and o and len(o) <= 200 for o in options)
    ):
        raise ValueError(f"options must be a list of 1 to {MAX_OPTIONS} non-empty strings (at most 200 characters)")
    return question, list(options)


def review_close(review: Review, reason: str) -> None:
    Review.objects.filter(pk=review.pk, status=ReviewStatus.PENDING).update(status=ReviewStatus.EXPIRED)
    ReviewAction.objects.create(review=review, action="closed", comment=reason)
    reviews_publish_on_commit([review.id])


def reviews_close_for_job(*, job_id, reason: str, exclude=None) -> int:
    """Close a job's pending reviews because the job ended (whatever the reason); their
    claims go with them, and they leave every inbox."""
    pending = Review.objects.filter(job_id=job_id, status=ReviewStatus.PENDING)
    if exclude is not None:
        pending = pending.exclude(pk=exclude)
    ids = list(pending.values_list("id", flat=True))
    if not ids:
        return 0
    Review.objects.filter(id__in=ids, status=ReviewStatus.PENDING).update(status=ReviewStatus.EXPIRED)
    ReviewAction.objects.bulk_create([ReviewAction(review_id=i, action="closed", comment=reason[:1000]) for i in ids])
    reviews_publish_on_commit(ids)
    return len(ids)


# --- live inbox -----------------------------------------------------------------------------


def review_user_group(user_id) -> str:
    """The Channels group of one user's live review inbox (``/ws/reviews``)."""
    return f"reviews-user-{user_id}"


# Staff may decide every review, so they hear about every change.
STAFF_REVIEWS_GROUP = "reviews-staff"


def review_summary(review: Review) -> dict:
    """The shape pushed to the inbox (a subset of GET /reviews/{id})."""
    proposed = review.proposed if isinstance(review.proposed, dict) else {}
    return {
        "id": str(review.id),
        "kind": review.kind,
        "status": review.status,
        "job": str(review.job_id),
        "requirements": (review.job.requirements or "")[:200],
        "task": str(review.task_id) if review.task_id else None,
        "task_key": review.task.key if review.task_id else None,
        "agent": review.task.agent if review.task_id else None,
        "assignee": review.assignee.username if review.assignee_id else None,
        "group": review.reviewer_group.name if review.reviewer_group_id else None,
        "claimed_by": review.claimed_by.username if review.claimed_by_id else None,
        "deadline": review.deadline.isoformat() if review.deadline else None,
        "question": proposed.get("question") if review.kind == ReviewKind.QUESTION else None,
        "decision": review.decision or None,
        "created_at": review.created_at.isoformat(),
        "url": reverse("review-page", kwargs={"review_id": review.id}),
    }


def reviews_publish_on_commit(review_ids: list) -> None:
    ids = list(review_ids)
    transaction.on_commit(lambda: reviews_publish(ids), robust=True)


def reviews_publish(review_ids: list) -> None:
    """The one place that pushes review changes to live inboxes: to each user who may
    decide the review (job owner, assignee, members of its group) and to staff. Never
    raises: the inbox reloads the list from the API when it reconnects."""
    if not review_ids:
        return
    try:
        reviews = list(
            Review.objects.filter(id__in=review_ids).select_related(
                "job", "task", "assignee", "reviewer_group", "claimed_by"
            )
        )
        for review in reviews:
            message = {"type": "review.changed", "review": review_summary(review)}
            users = {review.job.owner_id, review.assignee_id}
            if review.reviewer_group_id:
                users |= set(review.reviewer_group.user_set.values_list("id", flat=True))
            for group in [*(review_user_group(u) for u in users if u is not None), STAFF_REVIEWS_GROUP]:
                group_send_nowait(group, message)
    except Exception:
        logger.exception("publishing %d review changes failed; inboxes catch up on reload", len(review_ids))
