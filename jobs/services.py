"""Writes on jobs that come from users: submit and cancel."""

from __future__ import annotations

import hashlib
import json

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from agentbus_site.api_errors import ApplicationError
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

    plan = spec.get("plan")
    if plan is None:
        # The planner agent (an LLM) turns requirements into a plan; it is not
        # configured in this deployment, so an explicit plan is required.
        raise ApplicationError(
            "A plan is required: no planner agent is configured to plan from requirements alone.",
            code="plan_required",
            fields={"plan": ["required when no planner is configured"]},
        )
    tasks = plan_validate(plan)

    try:
        with transaction.atomic():
            job = Job.objects.create(
                owner=owner,
                requirements=spec.get("requirements", ""),
                plan={"tasks": tasks},
                review_plan=spec.get("review_plan", False),
                priority=spec.get("priority", 0),
                metadata=spec.get("metadata") or {},
                idempotency_key=idempotency_key or None,
                request_digest=digest,
            )
            (event,) = events_append(
                job.id, [NewEvent("job.status", status=JobStatus.SUBMITTED, data={"tasks": len(tasks)})]
            )
            job.last_seq = event.seq
            orchestrator_notify(job.id)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        if not idempotency_key:
            raise
        existing = Job.objects.get(owner=owner, idempotency_key=idempotency_key)
        return _replay(existing, digest), False
    return job, True


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
    return locked
