"""What a running attempt reads and stores besides its state: upstream outputs, the
job's token budget, artifacts; and the staff's run-time agent registrations.

Every state change of an attempt (claim, progress, success, failure, retry, deferral,
a question) is jobs.lifecycle's, conditional on the attempt still being the running one.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from jobs.models import Task, TaskStatus


def task_upstream_outputs(*, task: Task) -> dict:
    if not task.depends_on:
        return {}
    return dict(Task.objects.filter(job_id=task.job_id, key__in=task.depends_on).values_list("key", "output"))


def task_status_now(*, task_id) -> str:
    """The task's status as committed (read again: the attempt's outcome just changed it)."""
    return Task.objects.filter(pk=task_id).values_list("status", flat=True).first() or "unknown"


def task_tokens_remaining(*, task: Task) -> int | None:
    """Tokens the job may still spend; None when it has no token budget. A budget is set
    at submission only, so the job row the claim read (``task.job``) tells whether there
    is one without a query on the way to every LLM call."""
    from jobs.models import Job

    if task.job.max_tokens is None:
        return None
    used, limit = Job.objects.filter(pk=task.job_id).values_list("tokens_used", "max_tokens").get()
    return None if limit is None else limit - used


def task_artifact_write(*, task: Task, name: str, data: bytes | str, content_type: str | None = None):
    """Store a file for the task through Django's storage API; a second write of the
    same name (a retry) replaces the first. Refused once the attempt is not running."""
    import hashlib

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from agents.registry import NonRetryableError
    from jobs.models import Artifact

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
