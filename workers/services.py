"""Writes on tasks that come from the workers: claim an attempt, record its outcome.

Every write is conditional on the attempt that is running (status and attempt number
in the WHERE clause), so a stale worker (one whose task was cancelled, timed out by
the reconciler, or re-sent) can never commit a result: a result is committed at most
once, while tasks run at least once.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.events import NewEvent, events_append
from jobs.models import ReviewMode, Task, TaskStatus
from orchestration.inbox import orchestrator_notify


def task_claim(*, task_id: str, attempt: int, worker: str) -> Task | None:
    """Mark an attempt running; None if it is not queued any more (stale message)."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Task.objects.filter(pk=task_id, status=TaskStatus.QUEUED, attempt=attempt).update(
            status=TaskStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker, error=""
        )
        if claimed != 1:
            return None
        task = Task.objects.select_related("job").get(pk=task_id)
        events_append(
            task.job_id,
            [NewEvent("task.status", task_id=task.id, status=TaskStatus.RUNNING, data={"key": task.key, "attempt": attempt, "worker": worker})],
        )
    return task


def task_upstream_outputs(*, task: Task) -> dict:
    if not task.depends_on:
        return {}
    return dict(
        Task.objects.filter(job_id=task.job_id, key__in=task.depends_on).values_list("key", "output")
    )


def task_succeed(*, task: Task, output) -> bool:
    """Commit the attempt's output; False if the attempt is no longer the running one."""
    if task.review == ReviewMode.AFTER:
        # The output waits for a human before dependents see it (jobs.reviews).
        from jobs.reviews import task_output_hold

        return task_output_hold(task=task, output=output)
    with transaction.atomic():
        done = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).update(
            status=TaskStatus.SUCCEEDED, output=output, finished_at=timezone.now(), progress=1.0
        )
        if done != 1:
            return False
        events_append(
            task.job_id,
            [NewEvent("task.status", task_id=task.id, status=TaskStatus.SUCCEEDED, data={"key": task.key, "attempt": task.attempt})],
        )
        orchestrator_notify(task.job_id)
    return True


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times 0.5-1.0.

    The jitter spreads retries of many tasks that failed together (an agent's outage)
    so they do not all hit it again at the same instant.
    """
    ceiling = min(settings.AGENTBUS_RETRY_BACKOFF_MAX, settings.AGENTBUS_RETRY_BACKOFF_BASE * 2 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def task_fail_attempt(*, task: Task, error: str, retryable: bool = True) -> bool:
    """Record a failed attempt: schedule a retry with backoff, or fail the task for good.

    False if the attempt is no longer the running one (someone else settled it).
    """
    error = error[:4000]
    now = timezone.now()
    retry = retryable and task.attempt < task.max_attempts
    with transaction.atomic():
        current = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt)
        if retry:
            delay = retry_delay(task.attempt)
            done = current.update(
                status=TaskStatus.PENDING, error=error, next_attempt_at=now + timedelta(seconds=delay), worker=""
            )
            event = NewEvent(
                "task.retry",
                task_id=task.id,
                status=TaskStatus.PENDING,
                data={"key": task.key, "attempt": task.attempt, "error": error, "retry_in": round(delay, 3)},
            )
        else:
            done = current.update(status=TaskStatus.FAILED, error=error, finished_at=now)
            event = NewEvent(
                "task.status",
                task_id=task.id,
                status=TaskStatus.FAILED,
                data={"key": task.key, "attempt": task.attempt, "error": error},
            )
        if done != 1:
            return False
        events_append(task.job_id, [event])
        orchestrator_notify(task.job_id)
    return True


def task_heartbeat(*, task_id, attempt: int) -> bool:
    """Prove the attempt is alive; False when it is no longer the running one
    (cancelled, or declared lost), which tells the worker to stop it."""
    return (
        Task.objects.filter(pk=task_id, status=TaskStatus.RUNNING, attempt=attempt).update(
            heartbeat_at=timezone.now()
        )
        == 1
    )


def task_progress(*, task: Task, fraction: float, message: str = "") -> bool:
    fraction = max(0.0, min(1.0, float(fraction)))
    message = str(message)[:200]
    with transaction.atomic():
        done = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).update(
            progress=fraction, progress_message=message, heartbeat_at=timezone.now()
        )
        if done == 1:
            events_append(
                task.job_id,
                [NewEvent("task.progress", task_id=task.id, data={"key": task.key, "progress": fraction, "message": message})],
            )
    return done == 1
