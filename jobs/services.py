"""Writes on jobs that come from users: submit and cancel."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from agentbus_site.api_errors import ApplicationError
from jobs.budgets import budget_fields
from jobs.events import NewEvent, events_append
from jobs.models import JOB_TERMINAL, TASK_TERMINAL, Job, JobStatus, Task, TaskStatus
from jobs.plans import plan_validate
from orchestration.inbox import orchestrator_notify


def request_digest(spec: dict) -> str:
    """A stable fingerprint of a submission, to tell an idempotent replay from a reuse."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def job_submit(*, owner, spec: dict, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Validate and store a job, and wake the orchestrator on commit.

    Returns ``(job, created)``; ``created`` is False for an idempotent replay (same user,
    same key, same body). The same key with another body is a 422. Nothing is written
    for a job that fails validation.
    """
    digest = request_digest(spec)
    if idempotency_key:
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, digest), False

    tasks, budget = job_spec_validate(spec=spec)

    try:
        with transaction.atomic():
            _check_active_jobs_quota(owner)
            job = Job.objects.create(
                owner=owner,
                requirements=spec.get("requirements", ""),
                plan={"tasks": tasks} if tasks is not None else None,
                review_plan=spec.get("review_plan", False),
                **budget,
                priority=spec.get("priority", 0),
                metadata=spec.get("metadata") or {},
                remember=spec.get("remember", False),
                idempotency_key=idempotency_key or None,
                request_digest=digest,
            )
            (event,) = events_append(
                job.id, [NewEvent("job.status", status=JobStatus.SUBMITTED, data={"tasks": len(tasks or ())})]
            )
            job.last_seq = event.seq
            if spec.get("notify"):
                from webhooks.services import job_notify_create

                job_notify_create(job=job, notify=spec["notify"])
            orchestrator_notify(job.id)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        if not idempotency_key:
            raise
        existing = Job.objects.get(owner=owner, idempotency_key=idempotency_key)
        return _replay(existing, digest), False
    return job, True


def job_spec_validate(*, spec: dict, prefix: str = "") -> tuple[list[dict] | None, dict]:
    """The checks of a submission beyond its shape (plan, planner, budget), shared by
    job_submit and by schedules, whose job template must pass them when it is saved.
    Returns the plan's tasks (None: the planner plans) and the budget's Job columns;
    ``prefix`` puts the error paths under a field of a bigger body (``"job."``)."""
    plan = spec.get("plan")
    if plan is None and not settings.AGENTBUS_LLM_BASE_URL:
        # The planner agent (an LLM) turns requirements into a plan; it is not
        # configured in this deployment, so an explicit plan is required.
        raise ApplicationError(
            "A plan is required: no planner agent is configured to plan from requirements alone.",
            code="plan_required",
            fields={f"{prefix}plan": ["required when no planner is configured"]},
        )
    if plan is None and not spec.get("requirements", "").strip():
        raise ApplicationError(
            "Give requirements for the planner to plan from, or a plan.",
            code="requirements_required",
            fields={f"{prefix}requirements": ["required when there is no plan"]},
        )
    # Without a plan, the orchestrator has the planner agent make one (orchestration.planner).
    tasks = plan_validate(plan, prefix=f"{prefix}plan") if plan is not None else None
    return tasks, budget_fields(spec.get("budget"), tasks=tasks)


def _check_active_jobs_quota(owner) -> None:
    """Refuse a new job while the owner already has AGENTBUS_MAX_ACTIVE_JOBS_PER_USER
    unfinished ones (0 = no limit), so one user cannot fill the queues for everyone.

    The owner's row is locked first, so concurrent submissions by the same user are
    counted one after the other and cannot both slip under the limit.
    """
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from jobs.models import JOB_ACTIVE

    limit = settings.AGENTBUS_MAX_ACTIVE_JOBS_PER_USER
    if not limit:
        return
    list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True))
    # Reads the job_owner_status_created index.
    active = Job.objects.filter(owner=owner, status__in=JOB_ACTIVE).count()
    if active >= limit:
        raise ApplicationError(
            f"You already have {active} unfinished jobs, the most allowed at once ({limit}); "
            "submit again when one has finished, or cancel one.",
            code="too_many_active_jobs",
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        )


def _replay(job: Job, digest: str) -> Job:
    if job.request_digest != digest:
        raise ApplicationError(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            fields={"Idempotency-Key": ["already used with a different body"]},
        )
    return job


def job_cancel(*, job: Job) -> Job:
    """Cancel a job and every unfinished task. Running tasks are stopped by their worker,
    which sees on its next heartbeat that its attempt is no longer the running one.
    Cancelling a finished job is a 409."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status in JOB_TERMINAL:
            raise ApplicationError(
                f"The job is already {locked.status}.", code="job_finished", status_code=status.HTTP_409_CONFLICT
            )
        now = timezone.now()
        open_tasks = list(
            Task.objects.filter(job=locked).exclude(status__in=TASK_TERMINAL).values_list("id", flat=True)
        )
        Task.objects.filter(id__in=open_tasks).update(
            status=TaskStatus.CANCELLED, finished_at=now, next_attempt_at=None
        )
        locked.status = JobStatus.CANCELLED
        locked.finished_at = now
        locked.error = "cancelled by the user"
        locked.save(update_fields=["status", "finished_at", "error"])
        events_append(
            locked.id,
            [NewEvent("task.status", task_id=t, status=TaskStatus.CANCELLED) for t in open_tasks]
            + [NewEvent("job.status", status=JobStatus.CANCELLED)],
        )
        # Its gates have nothing left to decide: they leave the reviewers' inboxes.
        from jobs.reviews import reviews_close_for_job

        reviews_close_for_job(job_id=locked.id, reason="the job was cancelled")
    return locked


# Tasks a retry runs again: those that failed, and those that never ran because of them.
RETRYABLE_TASK_STATUSES = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)


def job_retry_failed(*, job: Job) -> Job:
    """Run a failed or cancelled job's unfinished work again, keeping what succeeded.

    Failed, skipped and cancelled tasks go back to pending with a fresh attempt budget
    (as many attempts as they had before, counted on from the attempt they reached, so
    attempt numbers stay unique and a late worker of an old attempt is still refused).
    The job runs again and the orchestrator is woken on commit; it dispatches whatever
    is ready, exactly as for a new job. Retrying a job that is not finished, or that
    succeeded, is a 409.
    """
    from django.db.models import F

    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.purged_at is not None:
            raise ApplicationError(
                "The job's inputs and outputs were purged (retention); it cannot run again.",
                code="job_purged",
                status_code=status.HTTP_410_GONE,
            )
        if locked.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise ApplicationError(
                f"Only a failed or cancelled job can be retried; this one is {locked.status}.",
                code="job_not_retryable",
                status_code=status.HTTP_409_CONFLICT,
            )
        retried = list(
            Task.objects.filter(job=locked, status__in=RETRYABLE_TASK_STATUSES).values_list("id", "key", "status")
        )
        if not retried and locked.tasks.exists():
            raise ApplicationError(
                "The job has no failed, skipped or cancelled task to retry.",
                code="nothing_to_retry",
                status_code=status.HTTP_409_CONFLICT,
            )
        Task.objects.filter(id__in=[t[0] for t in retried]).update(
            status=TaskStatus.PENDING,
            max_attempts=F("attempt") + F("max_attempts"),
            error="",
            output=None,
            progress=None,
            progress_message="",
            worker="",
            next_attempt_at=None,
            heartbeat_at=None,
            queued_at=None,
            started_at=None,
            finished_at=None,
        )
        # A job cancelled before it was planned has no tasks yet: it starts over as
        # submitted, and the orchestrator writes its tasks from the plan.
        locked.status = JobStatus.RUNNING if locked.started_at else JobStatus.SUBMITTED
        locked.error = ""
        locked.result = None
        locked.finished_at = None
        locked.save(update_fields=["status", "error", "result", "finished_at"])
        events_append(
            locked.id,
            [
                NewEvent(
                    "task.status", task_id=task_id, status=TaskStatus.PENDING, data={"key": key, "retried_from": was}
                )
                for task_id, key, was in retried
            ]
            + [NewEvent("job.status", status=locked.status, data={"retried": len(retried)})],
        )
        orchestrator_notify(locked.id)
    return locked


def job_requeue(*, job: Job) -> int:
    """Send again the messages of a job's queued tasks, and run due retries now.

    For an operator who knows the queue lost messages (Redis flushed, a queue emptied
    in the RQ dashboard) and does not want to wait for the reconciler. A duplicate is
    harmless: a worker claims an attempt only while it is still queued. Returns how
    many tasks were sent or brought forward.
    """
    from workers.queue import TaskMessage, tasks_enqueue

    now = timezone.now()
    with transaction.atomic():
        queued = list(Task.objects.filter(job=job, status=TaskStatus.QUEUED).only("id", "attempt", "queue", "timeout"))
        Task.objects.filter(id__in=[t.id for t in queued], status=TaskStatus.QUEUED).update(queued_at=now)
        waiting = Task.objects.filter(job=job, status=TaskStatus.PENDING, next_attempt_at__gt=now).update(
            next_attempt_at=now
        )
        messages = [TaskMessage(str(t.id), t.attempt, t.queue, t.timeout) for t in queued]
        if messages:
            transaction.on_commit(lambda: tasks_enqueue(messages), robust=True)
        orchestrator_notify(job.id)
    return len(queued) + waiting
