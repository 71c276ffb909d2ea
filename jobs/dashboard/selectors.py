"""Reads for the dashboard pages, shaped for templates: the job list with its task
progress and status counts, what hangs off a job's tasks (artifacts, review gates), and
the system strip. The task graph is in ``graph``, timelines in ``timeline``.

Everything here only reads; what a user may see is decided by ``jobs.selectors``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from jobs.models import TASK_TERMINAL, Artifact, Job, Review, Task, TaskStatus
from jobs.selectors import job_list, jobs_visible_to

# --- the job list -----------------------------------------------------------------------


def dashboard_jobs(*, user, status: str | None = None, q: str = "", owner: str = "") -> QuerySet[Job]:
    """The caller's jobs (everyone's for staff), newest first, filtered by status, by a
    search over requirements and id prefix, and (staff) by owner's username."""
    jobs = job_list(user=user, status=status)
    q = q.strip()
    if q:
        match = Q(requirements__icontains=q)
        compact = q.replace("-", "").lower()
        if 1 <= len(compact) <= 32 and all(c in "0123456789abcdef" for c in compact):
            match |= Q(id__startswith=compact) if len(compact) < 32 else Q(id=uuid.UUID(compact))
        jobs = jobs.filter(match)
    if owner and user.is_staff:
        jobs = jobs.filter(owner__username=owner)
    return jobs


def job_status_counts(*, user) -> dict[str, int]:
    rows = jobs_visible_to(user).order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


@dataclass
class TaskProgress:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    active: int = 0
    other_done: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.other_done

    def pct(self, n: int) -> float:
        return round(100 * n / self.total, 1) if self.total else 0.0

    @property
    def succeeded_pct(self) -> float:
        return self.pct(self.succeeded)

    @property
    def failed_pct(self) -> float:
        return self.pct(self.failed)

    @property
    def active_pct(self) -> float:
        return self.pct(self.active)

    @property
    def other_pct(self) -> float:
        return self.pct(self.other_done)


def jobs_progress(jobs: list[Job]) -> dict:
    """Task counts by outcome for one page of jobs: one grouped query, however many jobs.

    A job not planned yet has no Task rows; its total comes from the submitted plan.
    """
    progress = {job.id: TaskProgress() for job in jobs}
    rows = Task.objects.filter(job_id__in=list(progress)).order_by().values("job_id", "status").annotate(n=Count("id"))
    for row in rows:
        p = progress[row["job_id"]]
        p.total += row["n"]
        if row["status"] == TaskStatus.SUCCEEDED:
            p.succeeded += row["n"]
        elif row["status"] == TaskStatus.FAILED:
            p.failed += row["n"]
        elif row["status"] in TASK_TERMINAL:
            p.other_done += row["n"]
        elif row["status"] in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            p.active += row["n"]
    for job in jobs:
        if progress[job.id].total == 0 and isinstance(job.plan, dict):
            progress[job.id].total = len(job.plan.get("tasks") or [])
    return progress


# --- what hangs off a job's tasks: artifacts and review gates ----------------------------


def job_artifacts_by_task(job: Job) -> dict:
    """The files each task wrote, with the API's download path; one query."""
    by_task: dict = defaultdict(list)
    for artifact in Artifact.objects.filter(job=job).only("id", "job_id", "task_id", "name", "size", "content_type"):
        artifact.download_path = reverse(
            "job-artifact", kwargs={"job_id": str(artifact.job_id), "artifact_id": str(artifact.id)}
        )
        by_task[artifact.task_id].append(artifact)
    return by_task


def job_reviews_by_task(job: Job) -> dict:
    """The job's review gates, newest first, keyed by task id (None: the plan review)."""
    by_task: dict = defaultdict(list)
    reviews = Review.objects.filter(job=job).select_related("decided_by").order_by("-created_at")
    for review in reviews:
        by_task[review.task_id].append(review)
    return by_task


# --- the system strip staff see on the dashboard ------------------------------------------


def system_summary() -> dict | None:
    """Orchestrator and worker heartbeats and queue depths (GET /system, condensed);
    None when Redis cannot be read, so the dashboard still renders."""
    from redis.exceptions import RedisError

    from core.heartbeats import system_status

    try:
        status = system_status()
    except (RedisError, OSError):
        return None
    leader = next((o for o in status["orchestrators"]["instances"] if o["role"] == "leader"), None)
    return {
        "leader": leader,
        "standbys": sum(1 for o in status["orchestrators"]["instances"] if o["role"] != "leader"),
        "workers": status["workers"],
        "queues": sorted(status["queues"].items()),
    }
