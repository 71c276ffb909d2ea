"""Human in the loop: open review gates, decide them, claim them, and apply deadlines.

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

Each transition is a conditional UPDATE on the task (or job) that is only true while it
is waiting on this gate, inside one transaction with the review's own update, its audit
row (ReviewAction) and the job's event; so a decision is recorded once and acted on
once, and a review of a job that was cancelled meanwhile cannot wake it up. Decisions
wake the orchestrator, which dispatches what became ready exactly as for any task.

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
from django.db.models import F, Q
from django.utils import timezone
from rest_framework import status

from agentbus_site.api_errors import ApplicationError
from jobs.events import NewEvent, events_append
from jobs.models import (
    JOB_TERMINAL,
    TASK_TERMINAL,
    Job,
    JobStatus,
    Review,
    ReviewAction,
    ReviewDecision,
    ReviewDefault,
    ReviewKind,
    ReviewMode,
    ReviewStatus,
    Task,
    TaskStatus,
)
from jobs.review_claims import claim_expired_q, claim_holds, may_release_q
from orchestration.inbox import orchestrator_notify

logger = logging.getLogger(__name__)

# Decisions that let the gated work go on (a deadline's "approve" is recorded as approve).
PASSING = (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.RESPOND)

# What each kind of review accepts from a human.
ALLOWED_DECISIONS = {
    ReviewKind.PLAN: (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT),
    ReviewKind.BEFORE: (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT),
    ReviewKind.AFTER: (ReviewDecision.APPROVE, ReviewDecision.EDIT, ReviewDecision.REJECT),
    ReviewKind.QUESTION: (ReviewDecision.RESPOND, ReviewDecision.REJECT),
}

MAX_QUESTION_CHARS = 4000
MAX_OPTIONS = 50


# --- opening gates ----------------------------------------------------------------------


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
    events: list[NewEvent] | None = None,
) -> Review:
    """Create a pending review with its "opened" audit row.

    Its event goes to ``events`` when the caller appends a batch itself (the
    orchestrator), else straight to the job's log. Broadcast to reviewers on commit.
    """
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
        "review.opened",
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
    if events is None:
        events_append(job_id, [event])
    else:
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


def plan_gate_hold(*, job: Job, events: list[NewEvent]) -> bool:
    """Called by the orchestrator before it writes a job's tasks: True if the plan must
    wait for a human (a plan review is opened and the job is ``awaiting_review``)."""
    if not job.review_plan or job.plan is None:
        return False
    if Review.objects.filter(job_id=job.id, kind=ReviewKind.PLAN, decision__in=PASSING).exists():
        return False
    Job.objects.filter(pk=job.id).update(status=JobStatus.AWAITING_REVIEW)
    job.status = JobStatus.AWAITING_REVIEW
    events.append(NewEvent("job.status", status=JobStatus.AWAITING_REVIEW, data={"review": "plan"}))
    review_open(job_id=job.id, kind=ReviewKind.PLAN, proposed=job.plan, events=events)
    return True


def before_gates_hold(ready: list[Task], *, events: list[NewEvent]) -> list[Task]:
    """Called by the orchestrator with the tasks it is about to dispatch: holds those with
    ``"review": "before"`` whose input no human has approved yet (the task becomes
    ``awaiting_review``), and returns the rest."""
    gated = [t for t in ready if t.review == ReviewMode.BEFORE]
    if not gated:
        return ready
    passed = set(
        Review.objects.filter(
            task_id__in=[t.id for t in gated], kind=ReviewKind.BEFORE, decision__in=PASSING
        ).values_list("task_id", flat=True)
    )
    hold = [t for t in gated if t.id not in passed]
    if not hold:
        return ready
    rows = {t.id: t for t in Task.objects.filter(id__in=[t.id for t in hold]).select_related("job")}
    for task in hold:
        if Task.objects.filter(pk=task.id, status=TaskStatus.PENDING).update(status=TaskStatus.AWAITING_REVIEW) != 1:
            continue
        task.status = TaskStatus.AWAITING_REVIEW
        row = rows[task.id]
        events.append(
            NewEvent(
                "task.status",
                task_id=task.id,
                status=TaskStatus.AWAITING_REVIEW,
                data={"key": task.key, "review": "before"},
            )
        )
        review_open(
            job_id=row.job_id,
            task=row,
            kind=ReviewKind.BEFORE,
            proposed=row.input,
            attempt=row.attempt,
            options=gate_options(row.job.plan, row.key),
            events=events,
        )
    held = {t.id for t in hold}
    return [t for t in ready if t.id not in held]


def task_output_hold(*, task: Task, output: Any) -> bool:
    """Called by the worker instead of succeeding a task with ``"review": "after"``: the
    output is stored as proposed and waits for a human. False if the attempt is no
    longer the running one."""
    with transaction.atomic():
        held = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).update(
            status=TaskStatus.AWAITING_REVIEW, output=output, progress=1.0, worker=""
        )
        if held != 1:
            return False
        events_append(
            task.job_id,
            [
                NewEvent(
                    "task.status",
                    task_id=task.id,
                    status=TaskStatus.AWAITING_REVIEW,
                    data={"key": task.key, "attempt": task.attempt, "review": "after"},
                )
            ],
        )
        review_open(
            job_id=task.job_id,
            task=task,
            kind=ReviewKind.AFTER,
            proposed=output,
            attempt=task.attempt,
            options=gate_options(task.job.plan, task.key),
        )
    return True


def task_ask_human(*, task: Task, question: str, options: list[str] | None = None) -> bool:
    """Suspend a running attempt on a question: the task becomes ``awaiting_input``, its
    worker is free, and a question review is opened. Once answered the task runs again
    with ``ctx.human["answer"]`` (``human.answer`` for HTTP agents).

    Raises ValueError for a malformed question; False if the attempt is no longer the
    running one.
    """
    question, options = question_validate(question, options)
    with transaction.atomic():
        held = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).update(
            status=TaskStatus.AWAITING_INPUT, worker=""
        )
        if held != 1:
            return False
        events_append(
            task.job_id,
            [
                NewEvent(
                    "task.status",
                    task_id=task.id,
                    status=TaskStatus.AWAITING_INPUT,
                    data={"key": task.key, "attempt": task.attempt, "question": question},
                )
            ],
        )
        review_open(
            job_id=task.job_id,
            task=task,
            kind=ReviewKind.QUESTION,
            proposed={"question": question, "options": options},
            attempt=task.attempt,
            options=gate_options(task.job.plan, task.key),
        )
    return True


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
        raise ApplicationError("No such review.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    with transaction.atomic():
        # The job row first, as the orchestrator and the workers lock it, so a decision
        # never deadlocks with them.
        job = Job.objects.select_for_update().only("id", "status", "plan", "owner_id").get(pk=review.job_id)
        review = (
            Review.objects.select_for_update(of=("self",))
            .select_related("task", "claimed_by", "decided_by")
            .get(pk=review_id)
        )
        if not review.is_pending:
            raise ApplicationError(
                f"This review was already {review.status}"
                + (f" ({review.decision} by {review.decided_by or 'the orchestrator'})." if review.decision else "."),
                code="review_already_decided",
                status_code=status.HTTP_409_CONFLICT,
            )
        # hardening (issue 11): an expired claim no longer binds (jobs.review_claims).
        if user is not None and claim_holds(review) and review.claimed_by_id != user.id:
            raise ApplicationError(
                f"{review.claimed_by.username} has claimed this review.",
                code="review_claimed",
                status_code=status.HTTP_409_CONFLICT,
            )
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
        if job.status in JOB_TERMINAL:
            _review_close(review, f"the job is {job.status}")
            finished = job.status
        else:
            finished = None
            _decide_and_act(review, job, user, decision, value, comment, deadline)
    if finished:  # raised after the transaction, so that closing the review is kept
        raise ApplicationError(
            f"The job is already {finished}; the review is closed.",
            code="job_finished",
            status_code=status.HTTP_409_CONFLICT,
        )
    return review


def _decide_and_act(review: Review, job: Job, user, decision: str, value: Any, comment: str, deadline: bool) -> None:
    """Inside review_decide's transaction: act, record the decision, its audit row and event."""
    now = timezone.now()
    events: list[NewEvent] = []
    effect = _apply(review, job, decision, value, comment, now, events)
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
    events.insert(
        0,
        NewEvent(
            "review.decided",
            task_id=review.task_id,
            status=review.status,
            data=data,
        ),
    )
    events_append(job.id, events)
    orchestrator_notify(job.id)
    reviews_publish_on_commit([review.id])


def _decided_value(review: Review, decision: str, value: Any) -> Any:
    """Validate what comes with a decision; returns what is stored as the decided value."""
    if decision == ReviewDecision.EDIT:
        if review.kind == ReviewKind.PLAN:
            from jobs.plans import plan_validate

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


def _apply(review: Review, job: Job, decision: str, value: Any, comment: str, now, events: list[NewEvent]) -> dict:
    """Act on a decision; returns what it did, for the event log."""
    if review.kind == ReviewKind.PLAN and decision == ReviewDecision.REJECT:
        replanned = _replan(review, job, comment, events)
        if replanned:
            return replanned
    if decision == ReviewDecision.FAIL or (review.kind == ReviewKind.PLAN and decision == ReviewDecision.REJECT):
        reason = comment or ("the plan was rejected" if review.kind == ReviewKind.PLAN else "review gate failed")
        _job_fail(job, f"{review.kind} review: {decision}: {reason}", now, events, except_review=review.id)
        return {"effect": "job_failed"}

    if review.kind == ReviewKind.PLAN:
        if decision == ReviewDecision.EDIT:
            job.plan = value
        Job.objects.filter(pk=job.id).update(plan=job.plan, status=JobStatus.PLANNING)
        events.append(NewEvent("job.status", status=JobStatus.PLANNING, data={"plan_approved": True}))
        return {"effect": "plan_approved"}

    task = review.task
    waiting = TaskStatus.AWAITING_INPUT if review.kind == ReviewKind.QUESTION else TaskStatus.AWAITING_REVIEW
    current = Task.objects.filter(pk=task.pk, status=waiting)

    if decision == ReviewDecision.REJECT and review.kind == ReviewKind.AFTER:
        limit = gate_options(job.plan, task.key).get("max_rejections", settings.AGENTBUS_REVIEW_MAX_REJECTIONS)
        rejections = (
            1
            + Review.objects.filter(task=task, kind=ReviewKind.AFTER, decision=ReviewDecision.REJECT)
            .exclude(pk=review.pk)
            .count()
        )
        if rejections > limit:
            error = f"output rejected {rejections} time(s) (limit {limit}): {comment}".strip()
            _task_set(current, task, TaskStatus.FAILED, events, error=error, finished_at=now)
            return {"effect": "task_failed", "rejections": rejections}
        # The rejected attempt does not count against the task's retry budget.
        _task_set(
            current,
            task,
            TaskStatus.PENDING,
            events,
            extra={"feedback": comment, "rejections": rejections},
            output=None,
            error="",
            next_attempt_at=None,
            max_attempts=F("max_attempts") + 1,
        )
        return {"effect": "task_rerun", "rejections": rejections}

    if decision == ReviewDecision.REJECT:  # before or question: the task does not run (again)
        error = (
            f"{'input' if review.kind == ReviewKind.BEFORE else 'question'} rejected by the reviewer: {comment}".strip()
        )
        _task_set(current, task, TaskStatus.FAILED, events, error=error, finished_at=now)
        return {"effect": "task_failed"}

    if review.kind == ReviewKind.BEFORE:
        fields = {"input": value} if decision == ReviewDecision.EDIT else {}
        _task_set(current, task, TaskStatus.PENDING, events, **fields)
        return {"effect": "task_released"}

    if review.kind == ReviewKind.AFTER:
        fields = {"output": value} if decision == ReviewDecision.EDIT else {}
        _task_set(current, task, TaskStatus.SUCCEEDED, events, finished_at=now, **fields)
        return {"effect": "output_accepted"}

    # A question answered: the agent runs again with the answer; being suspended does
    # not count against its retry budget.
    _task_set(current, task, TaskStatus.PENDING, events, next_attempt_at=None, max_attempts=F("max_attempts") + 1)
    return {"effect": "task_resumed"}


def _replan(review: Review, job: Job, comment: str, events: list[NewEvent]) -> dict | None:
    """A rejected plan that the planner agent made is planned again, with the feedback in
    the planner's ``ctx.human`` (up to AGENTBUS_REVIEW_MAX_REJECTIONS times); None when
    the plan came from the user (the job fails instead)."""
    from orchestration.planner import PLANNER_TASK_KEY

    planner = Task.objects.filter(job_id=job.id, key=PLANNER_TASK_KEY).only("id", "key").first()
    if planner is None:
        return None
    rejections = (
        1
        + Review.objects.filter(job_id=job.id, kind=ReviewKind.PLAN, decision=ReviewDecision.REJECT)
        .exclude(pk=review.pk)
        .count()
    )
    if rejections > settings.AGENTBUS_REVIEW_MAX_REJECTIONS:
        return None
    Job.objects.filter(pk=job.id).update(plan=None, status=JobStatus.PLANNING)
    current = Task.objects.filter(pk=planner.pk, status=TaskStatus.SUCCEEDED)
    _task_set(
        current,
        planner,
        TaskStatus.PENDING,
        events,
        extra={"feedback": comment, "rejections": rejections},
        output=None,
        error="",
        next_attempt_at=None,
        finished_at=None,
        max_attempts=F("max_attempts") + 1,
    )
    events.append(NewEvent("job.status", status=JobStatus.PLANNING, data={"replan": rejections}))
    return {"effect": "replan", "rejections": rejections}


def _task_set(
    current, task: Task, new_status: str, events: list[NewEvent], *, extra: dict | None = None, **fields
) -> None:
    if current.update(status=new_status, **fields) != 1:
        raise ApplicationError(
            "The task is no longer waiting on this review.",
            code="task_not_waiting",
            status_code=status.HTTP_409_CONFLICT,
        )
    data = {"key": task.key, **(extra or {})}
    if fields.get("error"):
        data["error"] = fields["error"]
    events.append(NewEvent("task.status", task_id=task.id, status=new_status, data=data))


def _job_fail(job: Job, error: str, now, events: list[NewEvent], *, except_review=None) -> None:
    """Fail a job from a review: its unfinished tasks are cancelled (running ones stop on
    their next heartbeat) and its other pending reviews closed."""
    open_tasks = list(Task.objects.filter(job_id=job.id).exclude(status__in=TASK_TERMINAL).values_list("id", "key"))
    Task.objects.filter(id__in=[t[0] for t in open_tasks]).update(
        status=TaskStatus.CANCELLED, finished_at=now, next_attempt_at=None
    )
    Job.objects.filter(pk=job.id).update(status=JobStatus.FAILED, error=error[:4000], finished_at=now)
    job.status = JobStatus.FAILED
    events.extend(
        NewEvent("task.status", task_id=t, status=TaskStatus.CANCELLED, data={"key": k}) for t, k in open_tasks
    )
    events.append(NewEvent("job.status", status=JobStatus.FAILED, data={"error": error}))
    reviews_close_for_job(job_id=job.id, reason=error, exclude=except_review)


def _review_close(review: Review, reason: str) -> None:
    Review.objects.filter(pk=review.pk, status=ReviewStatus.PENDING).update(status=ReviewStatus.EXPIRED)
    ReviewAction.objects.create(review=review, action="closed", comment=reason)
    reviews_publish_on_commit([review.id])


def reviews_close_for_job(*, job_id, reason: str, exclude=None) -> int:
    """Close a job's pending reviews because the job ended (cancelled or failed)."""
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


# --- claiming ----------------------------------------------------------------------------


def review_claim(*, review: Review, user) -> Review:
    """Take a review so that no one else decides it meanwhile; 409 if someone else holds it.
    Claiming one's own claim again is a no-op."""
    with transaction.atomic():
        now = timezone.now()
        # hardening (issue 11): an expired claim can be taken over (jobs.review_claims).
        taken = Review.objects.filter(
            Q(claimed_by__isnull=True) | Q(claimed_by=user) | claim_expired_q(),
            pk=review.pk,
            status=ReviewStatus.PENDING,
        ).update(claimed_by=user, claimed_at=now)
        current = Review.objects.select_related("claimed_by", "task").get(pk=review.pk)
        if taken != 1:
            if not current.is_pending:
                raise ApplicationError(
                    f"This review was already {current.status}.",
                    code="review_already_decided",
                    status_code=status.HTTP_409_CONFLICT,
                )
            raise ApplicationError(
                f"{current.claimed_by.username} has already claimed this review.",
                code="review_claimed",
                status_code=status.HTTP_409_CONFLICT,
            )
        ReviewAction.objects.create(review=current, actor=user, action="claimed")
        events_append(
            current.job_id,
            [
                NewEvent(
                    "review.claimed", task_id=current.task_id, data={"review": str(current.id), "by": user.username}
                )
            ],
        )
        reviews_publish_on_commit([current.id])
    return current


def review_release(*, review: Review, user) -> Review:
    """Give a claimed review back: its holder, the job's owner or staff may. 409 otherwise."""
    with transaction.atomic():
        holder = may_release_q(user)  # hardening (issue 11): jobs.review_claims
        released = Review.objects.filter(
            holder, pk=review.pk, status=ReviewStatus.PENDING, claimed_by__isnull=False
        ).update(claimed_by=None, claimed_at=None)
        if released != 1:
            raise ApplicationError(
                "Only the reviewer who claimed a pending review, the job's owner or staff can release it.",
                code="review_not_claimed_by_you",
                status_code=status.HTTP_409_CONFLICT,
            )
        ReviewAction.objects.create(review=review, actor=user, action="released")
        events_append(
            review.job_id,
            [NewEvent("review.released", task_id=review.task_id, data={"review": str(review.id), "by": user.username})],
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
            if (
                Review.objects.filter(pk=review.pk, reminded_at__isnull=True, status=ReviewStatus.PENDING).update(
                    reminded_at=now
                )
                != 1
            ):
                continue
            ReviewAction.objects.create(review=review, action="reminded")
            events_append(
                review.job_id,
                [
                    NewEvent(
                        "review.reminder",
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


# --- what the agent sees -------------------------------------------------------------------


def task_human_context(*, task: Task) -> dict:
    """What humans told this task so far, for ``ctx.human`` (and HTTP agents' ``human``):
    ``answer``/``question`` (the newest answered question), ``answers`` (all of them, in
    order), ``feedback`` (the newest rejection's comment), ``feedbacks``,
    ``rejected_output`` (the output that was rejected) and ``edited_input`` (True when a
    reviewer changed the input). Empty for a task that no gate touched."""
    if task.attempt <= 1 and task.review == ReviewMode.NONE:
        return {}  # no gate could have been decided yet: skip the query on the hot path
    decided = Review.objects.filter(task_id=task.id).exclude(status=ReviewStatus.PENDING).exclude(decision="")
    human: dict = {}
    answers, feedbacks = [], []
    for kind, decision, proposed, value, comment in decided.order_by("created_at").values_list(
        "kind", "decision", "proposed", "decided_value", "comment"
    ):
        if kind == ReviewKind.QUESTION and decision == ReviewDecision.RESPOND:
            answer = (value or {}).get("answer")
            answers.append({"question": (proposed or {}).get("question"), "answer": answer if answer != "" else None})
        elif kind == ReviewKind.AFTER and decision == ReviewDecision.REJECT:
            feedbacks.append(comment)
            human["rejected_output"] = proposed
        elif kind == ReviewKind.BEFORE and decision == ReviewDecision.EDIT:
            human["edited_input"] = True
    if task.key == "_plan":  # the planner (orchestration.planner): its rejected plans
        for proposed, comment in (
            Review.objects.filter(job_id=task.job_id, kind=ReviewKind.PLAN, decision=ReviewDecision.REJECT)
            .order_by("created_at")
            .values_list("proposed", "comment")
        ):
            feedbacks.append(comment)
            human["rejected_output"] = proposed
    if answers:
        human.update(answer=answers[-1]["answer"], question=answers[-1]["question"], answers=answers)
    if feedbacks:
        human.update(feedback=feedbacks[-1], feedbacks=feedbacks)
    return human


# --- live inbox ------------------------------------------------------------------------------


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
        "url": f"/app/reviews/{review.id}",
    }


def reviews_publish_on_commit(review_ids: list) -> None:
    ids = list(review_ids)
    transaction.on_commit(lambda: reviews_publish(ids), robust=True)


def reviews_publish(review_ids: list) -> None:
    """The one place that pushes review changes to live inboxes: to each user who may
    decide the review (job owner, assignee, members of its group) and to staff. Never
    raises: the inbox reloads the list from the API when it reconnects."""
    from agentbus_site.channel_sender import group_send_nowait

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
