"""Per-job budgets: at most ``max_tasks`` tasks, ``max_tokens`` LLM tokens, and a deadline.

The task count is enforced where tasks are created (submission, the planner, spawns);
tokens and the deadline are watched by the orchestrator: a job over either stops at
once, its unfinished tasks cancelled (running ones are stopped by their worker's
supervisor on its next heartbeat), and fails with a reason that names the budget.
"""

from __future__ import annotations

from django.db.models import F, Q
from django.utils import timezone

from jobs.events import NewEvent, events_append
from jobs.models import JOB_ACTIVE, TASK_TERMINAL, Job, JobStatus, Task, TaskStatus

# The Job columns budget_exceeded reads; job_advance loads them with the locked row.
BUDGET_FIELDS = ("max_tasks", "max_tokens", "tokens_used", "deadline_at")


def budget_exceeded(job: Job, now) -> str | None:
    """Why the job must stop now, or None."""
    if job.deadline_at is not None and now >= job.deadline_at:
        return f"budget: the job's deadline ({job.deadline_at.isoformat()}) passed before it finished"
    if job.max_tokens is not None and job.tokens_used > job.max_tokens:
        return f"budget: the job used {job.tokens_used} LLM tokens, over its max_tokens of {job.max_tokens}"
    return None


def job_budget_stop(job: Job) -> bool:
    """Inside job_advance, with the job row locked: stop the job if it is over a budget.
    Returns True when it did (and wrote the events), so job_advance ends there."""
    now = timezone.now()
    reason = budget_exceeded(job, now)  # job_advance loaded BUDGET_FIELDS under the lock
    if reason is None:
        return False
    open_tasks = list(Task.objects.filter(job_id=job.id).exclude(status__in=TASK_TERMINAL).values_list("id", flat=True))
    Task.objects.filter(id__in=open_tasks).update(
        status=TaskStatus.CANCELLED, finished_at=now, next_attempt_at=None, error=reason
    )
    Job.objects.filter(pk=job.id).update(status=JobStatus.FAILED, error=reason, finished_at=now)
    job.status = JobStatus.FAILED
    events = [
        NewEvent("task.status", task_id=t, status=TaskStatus.CANCELLED, data={"error": reason}) for t in open_tasks
    ]
    events.append(NewEvent("job.status", status=JobStatus.FAILED, data={"error": reason}))
    events_append(job.id, events)
    Job.objects.filter(pk=job.id).update(advanced_seq=job.last_seq + len(events))
    return True


def jobs_over_budget(limit: int = 100) -> list:
    """Active jobs past their deadline or over their token budget, for the reconciler
    (a scan of active jobs only, by the partial index job_active)."""
    return list(
        Job.objects.filter(status__in=JOB_ACTIVE)
        .filter(Q(deadline_at__lte=timezone.now()) | Q(max_tokens__isnull=False, tokens_used__gt=F("max_tokens")))
        .values_list("id", flat=True)[:limit]
    )


def budget_fields(budget: dict | None, *, tasks: list[dict] | None) -> dict:
    """The Job columns of a submitted ``budget`` ({"max_tasks", "max_tokens",
    "deadline_seconds"}, each optional); a plan already over max_tasks is a 400."""
    from datetime import timedelta

    from agentbus_site.api_errors import ApplicationError

    budget = budget or {}
    max_tasks = budget.get("max_tasks")
    if max_tasks is not None and tasks is not None and len(tasks) > max_tasks:
        raise ApplicationError(
            f"The plan has {len(tasks)} tasks, more than the budget's max_tasks of {max_tasks}.",
            code="over_budget",
            fields={"budget.max_tasks": [f"the plan has {len(tasks)} tasks"]},
        )
    seconds = budget.get("deadline_seconds")
    return {
        "max_tasks": max_tasks,
        "max_tokens": budget.get("max_tokens"),
        "deadline_at": timezone.now() + timedelta(seconds=seconds) if seconds else None,
    }
