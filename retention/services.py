"""Retention: finished jobs' events, outputs and artifacts, and expired memories, purged.

What a purge keeps of a job: its row (status, owner, requirements, error, timings,
tokens) and its tasks' rows (key, agent, status, attempts, timings, error); what it
removes: the event log, the plan, the result, the tasks' inputs and outputs, review
payloads, artifacts (rows and files) and webhook deliveries. With
AGENTBUS_RETENTION_ARCHIVE on, the whole job is first written to Django storage as one
JSON file. The API then answers 410 with what was kept (jobs/purged.py).

Each batch is one short transaction over at most AGENTBUS_RETENTION_BATCH jobs, whose
rows it locks with SKIP LOCKED, so a purge never waits on, nor holds up, the
orchestrator or a worker for long.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs.models import JOB_TERMINAL, Artifact, Job, JobEvent, Review, ReviewAction, Task
from retention.models import RetentionPolicy

logger = logging.getLogger(__name__)


def retention_cutoffs(*, now: datetime, days: float | None = None) -> list[tuple[Q, datetime]]:
    """(which owners, finished before when) pairs: the deployment's age for users without
    their own policy, and each policy's age for its users. ``days`` overrides the
    deployment's age (the management command's --days)."""
    default = settings.AGENTBUS_RETENTION_DAYS if days is None else days
    by_days: dict[float, list[int]] = defaultdict(list)
    for user_id, job_days in RetentionPolicy.objects.filter(job_days__isnull=False).values_list("user_id", "job_days"):
        by_days[job_days].append(user_id)
    own = [u for users in by_days.values() for u in users]
    cutoffs = []
    if default > 0:
        cutoffs.append((~Q(owner_id__in=own) if own else Q(), now - timedelta(days=default)))
    for job_days, users in by_days.items():
        if job_days > 0:
            cutoffs.append((Q(owner_id__in=users), now - timedelta(days=job_days)))
    return cutoffs


def jobs_purgeable(*, now: datetime, limit: int, days: float | None = None) -> list:
    """Finished, unpurged jobs past their owner's retention, oldest first (index job_purgeable)."""
    ids: list = []
    for owners, cutoff in retention_cutoffs(now=now, days=days):
        if len(ids) >= limit:
            break
        ids += list(
            Job.objects.filter(owners, purged_at__isnull=True, status__in=JOB_TERMINAL, finished_at__lt=cutoff)
            .order_by("finished_at")
            .values_list("id", flat=True)[: limit - len(ids)]
        )
    return ids


def job_archive(*, job_id) -> str:
    """Write one job, everything about it, to Django storage; returns the file's name."""
    job = Job.objects.select_related("owner").get(pk=job_id)
    document = {
        "job": {
            "id": job.id, "owner": job.owner.username, "status": job.status, "requirements": job.requirements,
            "plan": job.plan, "result": job.result, "error": job.error, "metadata": job.metadata,
            "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
            "tokens_used": job.tokens_used,
        },
        "tasks": list(Task.objects.filter(job_id=job_id).values()),
        "events": [e.as_message() for e in JobEvent.objects.filter(job_id=job_id).order_by("seq")],
        "reviews": list(Review.objects.filter(job_id=job_id).values()),
        "artifacts": list(Artifact.objects.filter(job_id=job_id).values("id", "task_id", "name", "content_type", "size", "sha256")),
    }  # fmt: skip
    name = f"retention/{job.finished_at:%Y/%m/%d}/{job.id}.json"
    if default_storage.exists(name):
        default_storage.delete(name)  # a batch that failed after archiving runs again
    return default_storage.save(name, ContentFile(json.dumps(document, cls=DjangoJSONEncoder).encode()))


def jobs_purge(*, job_ids: list, now: datetime | None = None) -> int:
    """Purge these jobs (those still finished and unpurged) in one short transaction;
    returns how many were purged."""
    now = now or timezone.now()
    if not job_ids:
        return 0
    if settings.AGENTBUS_RETENTION_ARCHIVE:
        for job_id in job_ids:
            job_archive(job_id=job_id)
    from webhooks.models import JobNotify, WebhookDelivery

    with transaction.atomic():
        # A job retried since it was picked is active again: the re-check under the lock
        # leaves it alone; a job another transaction holds is taken next time.
        ids = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(id__in=job_ids, purged_at__isnull=True, status__in=JOB_TERMINAL)
            .values_list("id", flat=True)
        )
        if not ids:
            return 0
        files = [f for f in Artifact.objects.filter(job_id__in=ids).values_list("file", flat=True) if f]
        Artifact.objects.filter(job_id__in=ids).delete()
        JobEvent.objects.filter(job_id__in=ids).delete()
        Task.objects.filter(job_id__in=ids).update(input={}, output=None, usage={}, progress_message="")
        Review.objects.filter(job_id__in=ids).update(proposed=None, decided_value=None)
        ReviewAction.objects.filter(review__job_id__in=ids).update(before=None, after=None)
        WebhookDelivery.objects.filter(job_id__in=ids).delete()
        JobNotify.objects.filter(job_id__in=ids).delete()
        Job.objects.filter(id__in=ids).update(purged_at=now, plan=None, result=None)
        transaction.on_commit(lambda: _files_delete(files), robust=True)
    return len(ids)


def _files_delete(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:
            logger.exception("could not delete the purged artifact file %s", name)


def memories_purge_expired(*, now: datetime | None = None, limit: int = 200) -> int:
    """Delete memories whose TTL ran out, from Chroma first and then from PostgreSQL
    (with their history); if Chroma is down nothing is deleted, and the next run tries
    again, so no vector outlives its row. Expired memories were already out of search."""
    from memory.chroma import ChromaUnavailable, chroma_delete
    from memory.models import Memory

    now = now or timezone.now()
    # Reads the partial index memory_expiring.
    ids = list(Memory.objects.filter(expires_at__lt=now).order_by("expires_at").values_list("id", flat=True)[:limit])
    if not ids:
        return 0
    try:
        chroma_delete(ids=[str(i) for i in ids])
    except ChromaUnavailable as exc:
        logger.warning("cannot purge %d expired memories yet: Chroma is unavailable (%s)", len(ids), exc)
        return 0
    with transaction.atomic():
        Memory.objects.filter(id__in=ids, expires_at__lt=now).delete()
    return len(ids)


def retention_run(*, budget_seconds: float, days: float | None = None, pause: float = 0.0) -> dict:
    """Purge in batches until nothing is due or the time budget is spent; ``pause``
    sleeps between batches to leave the database to others."""
    started = time.monotonic()
    purged = memories = 0
    while True:
        batch = jobs_purgeable(now=timezone.now(), limit=settings.AGENTBUS_RETENTION_BATCH, days=days)
        done = jobs_purge(job_ids=batch)
        purged += done
        expired = memories_purge_expired()
        memories += expired
        if (not batch and not expired) or time.monotonic() - started >= budget_seconds:
            break
        if pause:
            time.sleep(pause)
    return {"jobs": purged, "memories": memories}


_next_run = 0.0


def retention_step() -> int:
    """The orchestrator's step: at most every AGENTBUS_RETENTION_INTERVAL seconds, purge
    for up to AGENTBUS_RETENTION_STEP_SECONDS; a backlog is worked off a slice a run."""
    global _next_run
    if time.monotonic() < _next_run:
        return 0
    done = retention_run(budget_seconds=settings.AGENTBUS_RETENTION_STEP_SECONDS)
    more = done["jobs"] >= settings.AGENTBUS_RETENTION_BATCH
    # A backlog comes back at the next reconcile pass; otherwise after the interval.
    _next_run = time.monotonic() + (0 if more else settings.AGENTBUS_RETENTION_INTERVAL)
    return done["jobs"] + done["memories"]
