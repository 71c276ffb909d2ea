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
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from jobs.events import NewEvent, events_append
from jobs.models import ReviewMode, Task, TaskStatus
from orchestration.inbox import orchestrator_notify
from workers.registry import agent_get


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
            [
                NewEvent(
                    "task.status",
                    task_id=task.id,
                    status=TaskStatus.RUNNING,
                    data={"key": task.key, "attempt": attempt, "worker": worker},
                )
            ],
            informational=True,
        )
    return task


def task_upstream_outputs(*, task: Task) -> dict:
    if not task.depends_on:
        return {}
    return dict(Task.objects.filter(job_id=task.job_id, key__in=task.depends_on).values_list("key", "output"))


def task_succeed(*, task: Task, output, spawn: list | None = None) -> bool:
    """Commit the attempt's output; False if the attempt is no longer the running one.

    ``spawn`` holds follow-up tasks the agent returned; they are validated under the
    job's lock (so concurrent spawns respect max_tasks) and written with the output, in
    the same transaction. An invalid spawn raises NonRetryableError and commits nothing.
    """
    if task.review == ReviewMode.AFTER:
        # The output waits for a human before dependents see it (jobs.reviews).
        from jobs.reviews import task_output_hold

        return task_output_hold(task=task, output=output)
    if spawn:
        return _task_succeed_spawning(task=task, output=output, spawn=spawn)
    with transaction.atomic():
        done = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).update(
            status=TaskStatus.SUCCEEDED, output=output, finished_at=timezone.now(), progress=1.0
        )
        if done != 1:
            return False
        events_append(
            task.job_id,
            [
                NewEvent(
                    "task.status",
                    task_id=task.id,
                    status=TaskStatus.SUCCEEDED,
                    data={"key": task.key, "attempt": task.attempt},
                )
            ],
        )
        orchestrator_notify(task.job_id)
    return True


def retry_delay(attempt: int, base: float | None = None) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times 0.5-1.0.

    The jitter spreads retries of many tasks that failed together (an agent's outage)
    so they do not all hit it again at the same instant. ``base`` is the agent's own
    retry policy, if it has one.
    """
    base = settings.AGENTBUS_RETRY_BACKOFF_BASE if base is None else base
    ceiling = min(settings.AGENTBUS_RETRY_BACKOFF_MAX, base * 2 ** (attempt - 1))
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
            spec = agent_get(task.agent)
            delay = retry_delay(task.attempt, spec.retry_backoff if spec else None)
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
        Task.objects.filter(pk=task_id, status=TaskStatus.RUNNING, attempt=attempt).update(heartbeat_at=timezone.now())
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
                [
                    NewEvent(
                        "task.progress",
                        task_id=task.id,
                        data={"key": task.key, "progress": fraction, "message": message},
                    )
                ],
                informational=True,
            )
    return done == 1


def _task_succeed_spawning(*, task: Task, output, spawn: list) -> bool:
    from jobs.models import Job
    from workers.spawn import spawn_validate

    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().only("id", "max_tasks").get(pk=task.job_id)
        existing = set(Task.objects.filter(job_id=task.job_id).values_list("key", flat=True))
        specs = spawn_validate(specs=spawn, parent_key=task.key, existing_keys=existing, max_tasks=job.max_tasks)
        done = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).update(
            status=TaskStatus.SUCCEEDED, output=output, finished_at=now, progress=1.0
        )
        if done != 1:
            return False
        Task.objects.bulk_create(
            Task(
                job_id=task.job_id,
                key=spec["key"],
                agent=spec["agent"],
                queue=spec["queue"],
                input=spec.get("input", {}),
                depends_on=spec["depends_on"],
                review=spec.get("review", "none"),
                allow_failure=spec.get("allow_failure", False),
                max_attempts=spec["max_attempts"],
                timeout=spec["timeout"],
                created_at=now,
            )
            for spec in specs
        )
        events_append(
            task.job_id,
            [
                NewEvent(
                    "task.status",
                    task_id=task.id,
                    status=TaskStatus.SUCCEEDED,
                    data={"key": task.key, "attempt": task.attempt, "spawned": [s["key"] for s in specs]},
                )
            ],
        )
        orchestrator_notify(task.job_id)
    return True


def task_defer(*, task: Task, delay: float, reason: str) -> bool:
    """Hand the attempt back without running it (the agent's circuit is open, or it
    runs its concurrency limit): the task waits ``delay`` seconds and is dispatched
    again with the same attempt number, so waiting never spends an attempt."""
    # At least a second, so the RQ job of this attempt is gone before the next one
    # with the same job id is sent.
    delay = max(1.0, delay) * random.uniform(1.0, 1.2)
    with transaction.atomic():
        done = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).update(
            status=TaskStatus.PENDING,
            attempt=task.attempt - 1,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            started_at=None,
            worker="",
        )
        if done != 1:
            return False
        events_append(
            task.job_id,
            [
                NewEvent(
                    "task.deferred",
                    task_id=task.id,
                    status=TaskStatus.PENDING,
                    data={"key": task.key, "reason": reason, "retry_in": round(delay, 3)},
                )
            ],
        )
    return True


def task_usage_record(*, task: Task, prompt_tokens: int, completion_tokens: int, total_tokens: int) -> int:
    """Add an LLM call's tokens to the task and its job (whatever becomes of the attempt:
    they were spent); returns the job's new total. Crossing the job's ``max_tokens``
    wakes the orchestrator, which stops the job."""
    from jobs.models import Job

    usage = dict(task.usage or {})
    for name, value in (
        ("prompt_tokens", prompt_tokens),
        ("completion_tokens", completion_tokens),
        ("total_tokens", total_tokens),
    ):
        usage[name] = usage.get(name, 0) + int(value)
    usage["calls"] = usage.get("calls", 0) + 1
    task.usage = usage
    with transaction.atomic():
        # Only this task's running worker writes its usage; the job total is a sum
        # over concurrent tasks, hence the F() expression.
        Task.objects.filter(pk=task.pk).update(tokens_used=F("tokens_used") + int(total_tokens), usage=usage)
        Job.objects.filter(pk=task.job_id).update(tokens_used=F("tokens_used") + int(total_tokens))
        used, limit = Job.objects.filter(pk=task.job_id).values_list("tokens_used", "max_tokens").get()
        if limit is not None and used > limit:
            orchestrator_notify(task.job_id)
    return used


def task_tokens_remaining(*, task: Task) -> int | None:
    """Tokens the job may still spend; None when it has no token budget."""
    from jobs.models import Job

    used, limit = Job.objects.filter(pk=task.job_id).values_list("tokens_used", "max_tokens").get()
    return None if limit is None else limit - used


def task_artifact_write(*, task: Task, name: str, data: bytes | str, content_type: str | None = None):
    """Store a file for the task through Django's storage API; a second write of the
    same name (a retry) replaces the first. Refused once the attempt is not running."""
    import hashlib

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from jobs.models import Artifact
    from workers.registry import NonRetryableError

    if not isinstance(name, str) or not (1 <= len(name) <= 200) or any(ord(c) < 32 for c in name):
        raise NonRetryableError("artifact name must be 1-200 printable characters")
    if isinstance(data, str):
        data = data.encode()
        content_type = content_type or "text/plain; charset=utf-8"
    if not isinstance(data, (bytes, bytearray)):
        raise NonRetryableError("artifact data must be bytes or str")
    if len(data) > settings.AGENTBUS_MAX_ARTIFACT_BYTES:
        raise NonRetryableError(
            f"artifact '{name}' is {len(data)} bytes; at most {settings.AGENTBUS_MAX_ARTIFACT_BYTES}"
        )
    content_type = (content_type or "application/octet-stream")[:100]
    with transaction.atomic():
        if not Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt).exists():
            return None
        artifact = Artifact.objects.filter(task_id=task.pk, name=name).first() or Artifact(
            job_id=task.job_id, task_id=task.pk, name=name
        )
        old_file = artifact.file.name if artifact.pk else None
        artifact.content_type = content_type
        artifact.size = len(data)
        artifact.sha256 = hashlib.sha256(data).hexdigest()
        artifact.file.save(name, ContentFile(bytes(data)), save=False)
        artifact.save()
        if old_file:
            transaction.on_commit(lambda: default_storage.delete(old_file))
    return artifact


def agent_definition_create(*, data: dict, created_by):
    """Register an HTTP or LLM agent at run time (staff); every process sees it at once."""
    from rest_framework import status

    from agentbus_site.api_errors import ApplicationError
    from workers.models import AgentDefinition
    from workers.registry import agent_defined_outside_database, agents_changed

    name = data["name"]
    if agent_defined_outside_database(name) or AgentDefinition.objects.filter(name=name).exists():
        raise ApplicationError(
            f"An agent named '{name}' is already registered.",
            code="agent_exists",
            status_code=status.HTTP_409_CONFLICT,
            fields={"name": ["already registered"]},
        )
    try:
        with transaction.atomic():
            definition = AgentDefinition.objects.create(created_by=created_by, **data)
    except IntegrityError:  # registered concurrently under the same name
        raise ApplicationError(
            f"An agent named '{name}' is already registered.",
            code="agent_exists",
            status_code=status.HTTP_409_CONFLICT,
            fields={"name": ["already registered"]},
        ) from None
    transaction.on_commit(agents_changed)
    agents_changed()
    return definition
