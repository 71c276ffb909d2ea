"""Per-job budgets: at most ``max_tasks`` tasks, ``max_tokens`` LLM tokens, and a deadline.

The task count is enforced where tasks are created (submission, the planner, spawns).
Tokens are checked by the lifecycle whenever a task records usage, and the deadline by
the orchestrator's timer: a job over either ends there (jobs.lifecycle's one way to end
a job), failed with a reason that names the budget.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from core.errors import ApplicationError
from jobs.models import JOB_ACTIVE, Job


def budget_exceeded(job: Job, now) -> str | None:
    """Why the job must stop now, or None."""
    if job.deadline_at is not None and now >= job.deadline_at:
        return f"budget: the job's deadline ({job.deadline_at.isoformat()}) passed before it finished"
    if job.max_tokens is not None and job.tokens_used > job.max_tokens:
        return f"budget: the job used {job.tokens_used} LLM tokens, over its max_tokens of {job.max_tokens}"
    return None


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
