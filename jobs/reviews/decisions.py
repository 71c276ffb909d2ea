"""What a human's decision does: decide, claim and release reviews, and apply deadlines.

A gate is a Review row. Four kinds hold work for a human:

- ``plan``: a job with ``review_plan`` waits (``awaiting_review``) before any task row is
  written; approve or edit (a new plan, validated like a submitted one) lets it run,
  reject fails it (or, for a plan the planner agent made, plans again with the
  feedback in the planner's ``ctx.human``).
- ``before``: a task with ``"review": "before"`` waits before its first dispatch; approve
  or edit (a new input) lets it run, reject fails it.
- ``after``: a task with ``"review": "after"`` finished an attempt; its output waits
  before its dependents see it. Approve or edit (a new output) makes it the task's
  output; reject runs the task again with the feedback in ``ctx.human``, up to the
  gate's ``max_rejections``, then fails it.
- ``question``: an agent called ``ctx.ask_human``; the task is ``awaiting_input`` and holds
  no worker. Respond runs it again with ``ctx.human["answer"]``; reject fails it.

A decision runs in one transaction that locks the job row first, then the review (the
lifecycle's lock order); the task's move off its gate is a conditional UPDATE through
jobs.lifecycle that is only true while it waits there, and the same transaction settles
the job, so what the decision released is dispatched before it commits. A decision is
recorded once and acted on once, and a review of a job that ended meanwhile cannot wake
it up. Gates are opened by the lifecycle (jobs.reviews.gates).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.errors import ApplicationError, Conflict, NotFound
from jobs import lifecycle
from jobs.events import EventType, NewEvent
from jobs.models import (
    JOB_TERMINAL,
    Review,
    ReviewAction,
    ReviewDecision,
    ReviewDefault,
    ReviewKind,
    ReviewStatus,
    Task,
    TaskStatus,
)
from jobs.plans import PLANNER_TASK_KEY, plan_validate
from jobs.reviews.claims import claim_expired_q, claim_holds, may_release_q
from jobs.reviews.gates import gate_options, review_close, reviews_publish_on_commit

logger = logging.getLogger(__name__)

# What each kind of review accepts from a human.
ALLOWED_DECISIONS = {
    ReviewKind.PLAN: (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT),
    ReviewKind.BEFORE: (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT),
    ReviewKind.AFTER: (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT),
    ReviewKind.QUESTION: (ReviewDecision.RESPOND, ReviewDecision.REJECT),
}


# --- deciding ----------------------------------------------------------------------------


def review_decide(
    *, review_id, user, decision: str, comment: str = "", value: Any = None, deadline: bool = False
) -> Review:
    """Record a decision on a pending review and act on it (see the module docstring).

    ``value`` is the edited plan/input/output, or the answer of a question. ``user`` is
    None when the orchestrator applies a deadline's default outcome (``deadline=True``).
    A review that is not pending, or that someone else claimed, is a 409; a decision the
    review's kind does not take, or a bad value, is a 400 naming the field.
    """
    review = Review.objects.only("job_id").filter(pk=review_id).first()
    if review is None:
        raise NotFound("No such review.", code="not_found")
    with transaction.atomic():
        change = lifecycle.review_lock(job_id=review.job_id)  # the job row first, then the review
        review = (
            Review.objects.select_for_update(of=("self",))
            .select_related("task", "claimed_by", "decided_by")
            .get(pk=review_id)
        )
        if not review.is_pending:
            raise Conflict(
                f"This review was already {review.status}"
                + (f" ({review.decision} by {review.decided_by or 'the orchestrator'})." if review.decision else "."),
                code="review_already_decided",
            )
        # An expired claim no longer binds (jobs.reviews.claims).
        if user is not None and claim_holds(review) and review.claimed_by_id != user.id:
            raise Conflict(f"{review.claimed_by.username} has claimed this review.", code="review_claimed")
        if decision != ReviewDecision.FAIL and decision not in ALLOWED_DECISIONS[review.kind]:
            allowed = ", ".join(ALLOWED_DECISIONS[review.kind])
            raise ApplicationError(
                f"A {review.kind} review takes one of: {allowed}.",
                fields={"decision": [f"must be one of: {allowed}"]},
            )
        value = (
            {"answer": None}
            if deadline and decision == ReviewDecision.RESPOND
            else _decided_value(review, decision, value)
        )
        finished = change.job.status if change.job.status in JOB_TERMINAL else None
        if finished:
            review_close(review, f"the job is {finished}")
        else:
            _decide_and_act(change, review, user, decision, value, comment, deadline)
    if finished:  # raised after the transaction, so that closing the review is kept
        raise Conflict(f"The job is already {finished}; the review is closed.", code="job_finished")
    return review


def _decide_and_act(change, review: Review, user, decision: str, value: Any, comment: str, deadline: bool) -> None:
    """Inside review_decide's transaction: record the decision, its audit row and event,
    act on it, and settle the job (what it released is dispatched on commit)."""
    now = change.now
    decided_at = len(change.events)
    effect = _apply(change, review, decision, value, comment)
    review.status = ReviewStatus.EXPIRED if deadline else ReviewStatus.DECIDED
    review.decision = decision
    review.decided_value = value
    review.comment = comment
    review.decided_by = user
    review.decided_at = now
    review.save(update_fields=["status", "decision", "decided_value", "comment", "decided_by", "decided_at"])
    changed = {"before": review.proposed, "after": value} if decision == ReviewDecision.EDIT else None
    ReviewAction.objects.create(
        review=review,
        actor=user,
        action="expired" if deadline else "decided",
        decision=decision,
        comment=comment,
        before=review.proposed if changed else None,
        after=value,
    )
    data = {
        "review": str(review.id),
        "kind": review.kind,
        "key": review.task.key if review.task else None,
        "decision": decision,
        "by": user.username if user else None,
        "comment": comment,
        **effect,
    }
    if changed:
        data["changed"] = changed
    if deadline:
        data["deadline_passed"] = True
    # The decision comes first in the log, then what it did.
    change.events.insert(
        decided_at, NewEvent(EventType.REVIEW_DECIDED, task_id=review.task_id, status=review.status, data=data)
    )
    lifecycle.decision_commit(change)
    reviews_publish_on_commit([review.id])


def _decided_value(review: Review, decision: str, value: Any) -> Any:
    """Validate what comes with a decision; returns what is stored as the decided value."""
    if decision == ReviewDecision.EDIT:
        if review.kind == ReviewKind.PLAN:
            return {"tasks": plan_validate(value, prefix="plan")}
        if review.kind == ReviewKind.BEFORE:
            if not isinstance(value, dict):
                raise ApplicationError(
                    "An edit of a task's input needs the new input as a JSON object.",
                    fields={"input": ["required: a JSON object"]},
                )
            return value
        if value is None:
            raise ApplicationError("An edit of a task's output needs the new output.", fields={"output": ["required"]})
        return value
    if decision == ReviewDecision.RESPOND:
        options = (review.proposed or {}).get("options")
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ApplicationError("An answer is required.", fields={"answer": ["required"]})
        if options and value not in options:
            raise ApplicationError(
                "The answer must be one of the options the agent offered.",
                fields={"answer": [f"must be one of: {', '.join(options)}"]},
            )
        return {"answer": value}
    return None


def _apply(change, review: Review, decision: str, value: Any, comment: str) -> dict:
    """Act on a decision through the lifecycle; returns what it did, for the event log."""
    job = change.job
    if review.kind == ReviewKind.PLAN and decision == ReviewDecision.REJECT:
        replanned = _replan(change, review, comment)
        if replanned:
            return replanned
    if decision == ReviewDecision.FAIL or (review.kind == ReviewKind.PLAN and decision == ReviewDecision.REJECT):
        reason = comment or ("the plan was rejected" if review.kind == ReviewKind.PLAN else "review gate failed")
        lifecycle.job_fail(change, f"{review.kind} review: {decision}: {reason}", keep_review=review.id)
        return {"effect": "job_failed"}

    if review.kind == ReviewKind.PLAN:
        lifecycle.plan_approve(change, value if decision == ReviewDecision.EDIT else job.plan)
        return {"effect": "plan_approved"}

    task = review.task
    waiting = TaskStatus.AWAITING_INPUT if review.kind == ReviewKind.QUESTION else TaskStatus.AWAITING_REVIEW

    if decision == ReviewDecision.REJECT and review.kind == ReviewKind.AFTER:
        limit = gate_options(job.plan, task.key).get("max_rejections", settings.AGENTBUS_REVIEW_MAX_REJECTIONS)
        rejections = 1 + _rejections(Review.objects.filter(task=task, kind=ReviewKind.AFTER), review)
        if rejections > limit:
            error = f"output rejected {rejections} time(s) (limit {limit}): {comment}".strip()
            lifecycle.gate_release(change, task, waiting=waiting, to=TaskStatus.FAILED, error=error)
            return {"effect": "task_failed", "rejections": rejections}
        # The rejected attempt does not count against the task's retry budget.
        lifecycle.gate_release(
            change,
            task,
            waiting=waiting,
            to=TaskStatus.PENDING,
            extra={"feedback": comment, "rejections": rejections},
            output=None,
            error="",
            next_attempt_at=None,
            max_attempts=F("max_attempts") + 1,
        )
        return {"effect": "task_rerun", "rejections": rejections}

    if decision == ReviewDecision.REJECT:  # before or question: the task does not run (again)
        what = "input" if review.kind == ReviewKind.BEFORE else "question"
        error = f"{what} rejected by the reviewer: {comment}".strip()
        lifecycle.gate_release(change, task, waiting=waiting, to=TaskStatus.FAILED, error=error)
        return {"effect": "task_failed"}

    if review.kind == ReviewKind.BEFORE:
        fields = {"input": value} if decision == ReviewDecision.EDIT else {}
        lifecycle.gate_release(change, task, waiting=waiting, to=TaskStatus.PENDING, **fields)
        return {"effect": "task_released"}

    if review.kind == ReviewKind.AFTER:
        fields = {"output": value} if decision == ReviewDecision.EDIT else {}
        lifecycle.gate_release(change, task, waiting=waiting, to=TaskStatus.SUCCEEDED, **fields)
        return {"effect": "output_accepted"}

    # A question answered: the agent runs again with the answer; being suspended does
    # not count against its retry budget.
    lifecycle.gate_release(
        change, task, waiting=waiting, to=TaskStatus.PENDING, next_attempt_at=None, max_attempts=F("max_attempts") + 1
    )
    return {"effect": "task_resumed"}


def _rejections(reviews, review: Review) -> int:
    return reviews.filter(decision=ReviewDecision.REJECT).exclude(pk=review.pk).count()


def _replan(change, review: Review, comment: str) -> dict | None:
    """A rejected plan that the planner agent made is planned again, with the feedback in
    the planner's ``ctx.human`` (up to AGENTBUS_REVIEW_MAX_REJECTIONS times); None when
    the plan came from the user (the job fails instead)."""
    planner = Task.objects.filter(job_id=change.job.id, key=PLANNER_TASK_KEY).only("id", "key").first()
    if planner is None:
        return None
    rejections = 1 + _rejections(Review.objects.filter(job_id=change.job.id, kind=ReviewKind.PLAN), review)
    if rejections > settings.AGENTBUS_REVIEW_MAX_REJECTIONS:
        return None
    lifecycle.planner_rerun(change, planner, feedback=comment, rejections=rejections)
    return {"effect": "replan", "rejections": rejections}


# --- claiming ----------------------------------------------------------------------------


def review_claim(*, review: Review, user) -> Review:
    """Take a review so that no one else decides it meanwhile; 409 if someone else holds it.
    Claiming one's own claim again is a no-op."""
    with transaction.atomic():
        change = lifecycle.review_lock(job_id=review.job_id)
        now = change.now
        # An expired claim can be taken over (jobs.reviews.claims).
        taken = Review.objects.filter(
            Q(claimed_by__isnull=True) | Q(claimed_by=user) | claim_expired_q(),
            pk=review.pk,
            status=ReviewStatus.PENDING,
        ).update(claimed_by=user, claimed_at=now)
        current = Review.objects.select_related("claimed_by", "task").get(pk=review.pk)
        if taken != 1:
            if not current.is_pending:
                raise Conflict(
                    f"This review was already {current.status}.",
                    code="review_already_decided",
                )
            raise Conflict(
                f"{current.claimed_by.username} has already claimed this review.",
                code="review_claimed",
            )
        ReviewAction.objects.create(review=current, actor=user, action="claimed")
        lifecycle.review_note(
            change,
            [
                NewEvent(
                    EventType.REVIEW_CLAIMED,
                    task_id=current.task_id,
                    data={"review": str(current.id), "by": user.username},
                )
            ],
        )
        reviews_publish_on_commit([current.id])
    return current


def review_release(*, review: Review, user) -> Review:
    """Give a claimed review back: its holder, the job's owner or staff may. 409 otherwise."""
    with transaction.atomic():
        change = lifecycle.review_lock(job_id=review.job_id)
        holder = may_release_q(user)  # jobs.reviews.claims
        released = Review.objects.filter(
            holder, pk=review.pk, status=ReviewStatus.PENDING, claimed_by__isnull=False
        ).update(claimed_by=None, claimed_at=None)
        if released != 1:
            raise Conflict(
                "Only the reviewer who claimed a pending review, the job's owner or staff can release it.",
                code="review_not_claimed_by_you",
            )
        ReviewAction.objects.create(review=review, actor=user, action="released")
        lifecycle.review_note(
            change,
            [
                NewEvent(
                    EventType.REVIEW_RELEASED,
                    task_id=review.task_id,
                    data={"review": str(review.id), "by": user.username},
                )
            ],
        )
        reviews_publish_on_commit([review.id])
    return Review.objects.select_related("claimed_by", "task").get(pk=review.pk)


# --- deadlines (the orchestrator's reconcile step) ----------------------------------------


def reviews_apply_deadlines(limit: int = 100) -> int:
    """Apply the default outcome of pending reviews whose deadline has passed."""
    due = list(
        Review.objects.filter(status=ReviewStatus.PENDING, deadline__lte=timezone.now())
        .order_by("deadline")
        .values_list("id", "kind", "default_outcome")[:limit]
    )
    applied = 0
    for review_id, kind, outcome in due:
        decision, value = _default_decision(kind, outcome)
        try:
            review_decide(
                review_id=review_id,
                user=None,
                decision=decision,
                value=value,
                comment=f"deadline passed; default outcome: {outcome}",
                deadline=True,
            )
            applied += 1
        except ApplicationError as exc:
            # Decided meanwhile, or the job ended: nothing left to apply.
            logger.info("deadline of review %s not applied: %s", review_id, exc.message)
    return applied


def _default_decision(kind: str, outcome: str) -> tuple[str, Any]:
    if outcome == ReviewDefault.FAIL:
        return ReviewDecision.FAIL, None
    if outcome == ReviewDefault.REJECT:
        return ReviewDecision.REJECT, None
    if kind == ReviewKind.QUESTION:
        # Nobody answered in time: the agent runs again with ``answer`` None.
        return ReviewDecision.RESPOND, ""
    return ReviewDecision.APPROVE, None


def reviews_remind(limit: int = 100) -> int:
    """Emit a ``review.reminder`` event (once) for pending reviews whose deadline nears:
    within AGENTBUS_REVIEW_REMIND_BEFORE seconds, or half-way for shorter deadlines."""
    now = timezone.now()
    horizon = now + timedelta(seconds=settings.AGENTBUS_REVIEW_REMIND_BEFORE)
    candidates = list(
        Review.objects.filter(status=ReviewStatus.PENDING, deadline__lte=horizon, reminded_at__isnull=True)
        .order_by("deadline")
        .only("id", "job_id", "task_id", "deadline", "created_at", "kind")[:limit]
    )
    reminded = 0
    for review in candidates:
        lead = min(timedelta(seconds=settings.AGENTBUS_REVIEW_REMIND_BEFORE), (review.deadline - review.created_at) / 2)
        if now < review.deadline - lead:
            continue
        with transaction.atomic():
            change = lifecycle.review_lock(job_id=review.job_id)
            if (
                Review.objects.filter(pk=review.pk, reminded_at__isnull=True, status=ReviewStatus.PENDING).update(
                    reminded_at=now
                )
                != 1
            ):
                continue
            ReviewAction.objects.create(review=review, action="reminded")
            lifecycle.review_note(
                change,
                [
                    NewEvent(
                        EventType.REVIEW_REMINDER,
                        task_id=review.task_id,
                        data={
                            "review": str(review.id),
                            "kind": review.kind,
                            "deadline": review.deadline.isoformat(),
                            "seconds_left": max(0, round((review.deadline - now).total_seconds())),
                        },
                    )
                ],
            )
            reviews_publish_on_commit([review.id])
        reminded += 1
    return reminded
