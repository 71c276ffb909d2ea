"""The orchestrator's recoveries and timers: finding work that PostgreSQL says is due or
lost, and handing it to the job lifecycle.

The orchestrator is never on a task's normal path (jobs.lifecycle dispatches dependents
in the committing transaction); these steps find only what needs a clock or a repair,
and each reads partial indexes over active rows, so its cost does not grow with history.
Every one is idempotent: it can run again after a crash or a leader change, or run in
two orchestrators at once, without doing anything twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Min
from django.utils import timezone

from core.queue import messages_waiting
from core.streams import stream_abandon
from jobs.budgets import jobs_over_budget
from jobs.lifecycle import task_fail_attempt, task_message, tasks_resend
from jobs.models import JOB_ACTIVE, Job, Task, TaskStatus

logger = logging.getLogger(__name__)


def jobs_needing_attention(limit: int = 100) -> list:
    """Active jobs the lifecycle must settle again: a retry or deferral whose wait has
    passed, a budget that ran out, and jobs with events nobody settled (a safety net:
    every transition settles its job, so this finds only what a crash interrupted)."""
    due = (
        Task.objects.filter(status=TaskStatus.PENDING, next_attempt_at__lte=timezone.now())
        .values_list("job_id", flat=True)
        .distinct()[:limit]
    )
    stale = Job.objects.filter(status__in=JOB_ACTIVE, last_seq__gt=F("advanced_seq")).values_list("id", flat=True)[
        :limit
    ]
    return list(dict.fromkeys([*due, *jobs_over_budget(limit), *stale]))


def next_due_at() -> datetime | None:
    """When the earliest waiting retry falls due (the task_retry_due partial index), so the
    orchestrator can sleep until then and not a moment longer."""
    return Task.objects.filter(status=TaskStatus.PENDING, next_attempt_at__isnull=False).aggregate(
        due=Min("next_attempt_at")
    )["due"]


def tasks_requeue_lost(limit: int = 100) -> int:
    """Send again the message of tasks sent longer than AGENTBUS_REQUEUE_AFTER ago
    without a worker starting them: their message was lost (Redis flushed or restarted,
    or the process that committed the dispatch died before sending it, or a worker given
    a task to run next died first). A duplicate is harmless: a worker claims an attempt
    only while it is queued. Tasks waiting for their admission (jobs.scheduling) were
    never sent and are not lost."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENTBUS_REQUEUE_AFTER)
    lost = list(
        Task.objects.filter(status=TaskStatus.QUEUED, sent_at__lt=cutoff).only(
            "id", "job_id", "attempt", "queue", "timeout"
        )[:limit]
    )
    if not lost:
        return 0
    # A message still waiting in its queue (workers busy) is not lost: leave it, and look
    # again only after another AGENTBUS_REQUEUE_AFTER.
    waiting = messages_waiting([task_message(t) for t in lost])
    by_job: dict = defaultdict(list)
    for task in lost:
        by_job[task.job_id].append(task)
    sent = 0
    for job_id, tasks in by_job.items():
        resend = [t for t in tasks if str(t.id) not in waiting]
        Task.objects.filter(id__in=[t.id for t in tasks if str(t.id) in waiting], status=TaskStatus.QUEUED).update(
            sent_at=timezone.now()
        )
        if resend:
            sent += tasks_resend(job_id=job_id, tasks=resend)
    if sent:
        logger.warning("re-sent %d task messages that no worker picked up", sent)
    return sent


def tasks_fail_silent(limit: int = 100) -> int:
    """Running tasks whose worker stopped beating (killed, machine gone) lose their attempt
    and are retried per their policy."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENTBUS_TASK_HEARTBEAT_TIMEOUT)
    silent = list(Task.objects.filter(status=TaskStatus.RUNNING, heartbeat_at__lt=cutoff)[:limit])
    for task in silent:
        task_fail_attempt(
            task=task,
            error=f"worker {task.worker or '?'} stopped heartbeating (lost or killed)",
            retryable=True,
        )
        stream_abandon(
            job_id=task.job_id, task_id=task.id, attempt=task.attempt, reason="the worker stopped heartbeating"
        )
    return len(silent)
