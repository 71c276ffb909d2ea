"""Each task's timeline and attempts, rebuilt from the job's event log: segments
(blocked, queued, running, backoff, review) placed on one time axis, as data for
``templates/jobs/job/_timeline.html`` and the task list in ``_tasks.html``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.urls import reverse
from django.utils import timezone

from jobs.dashboard.lookups import Subscriptable
from jobs.models import TASK_TERMINAL, Job, JobEvent, Task, TaskStatus

# What a task is doing while in each status, as drawn on its timeline.
SEGMENT_KIND = {
    TaskStatus.PENDING: "blocked",
    TaskStatus.QUEUED: "queued",
    TaskStatus.RUNNING: "running",
    TaskStatus.AWAITING_REVIEW: "review",
    TaskStatus.AWAITING_INPUT: "review",
}
SEGMENT_TITLE = {
    "blocked": "waiting for dependencies",
    "queued": "waiting in the queue",
    "running": "running",
    "backoff": "waiting to retry",
    "review": "waiting for a human",
}


@dataclass
class Segment(Subscriptable):
    kind: str
    start: datetime
    end: datetime
    open: bool = False
    end_status: str = ""
    left: float = 0.0
    width: float = 0.0

    @property
    def seconds(self) -> float:
        return round((self.end - self.start).total_seconds(), 2)

    @property
    def title(self) -> str:
        return f"{SEGMENT_TITLE.get(self.kind, self.kind)}: {self.seconds:g}s"

    @property
    def ended_as(self) -> str:
        """How a run ended (a run that ended in a retry is drawn apart); "" for the rest."""
        return self.end_status if self.kind == "running" else ""


@dataclass
class TaskView(Subscriptable):
    """One task as the job page shows it: its timeline, attempts, files and review gates."""

    task: Task
    segments: list[Segment] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    reviews: list = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.task.key

    @property
    def progress_pct(self) -> int | None:
        """The reported progress while the task runs, in percent; None otherwise."""
        task = self.task
        if task.progress is None or task.status != TaskStatus.RUNNING:
            return None
        return round(task.progress * 100)

    @property
    def pending_review_url(self) -> str:
        """Where to decide the task's open review gate, if it has one (newest first)."""
        if self.reviews and self.reviews[0].status == "pending":
            return reverse("review-page", kwargs={"review_id": str(self.reviews[0].id)})
        return ""

    @property
    def took_seconds(self) -> float | None:
        task = self.task
        if task.started_at and task.finished_at:
            return (task.finished_at - task.started_at).total_seconds()
        return None


@dataclass
class Timeline(Subscriptable):
    rows: list[TaskView]
    start: datetime
    seconds: float


def job_status_events(job: Job) -> list:
    """The task state changes of a job (not its progress reports), oldest first, as rows
    with JobEvent's attribute names: a 200-task job has 600 of them, and rows cost a
    fraction of model instances on every live redraw."""
    return list(
        JobEvent.objects.filter(job=job, type__in=("task.status", "task.retry"))
        .order_by("seq")
        .values_list("seq", "type", "task_id", "status", "data", "at", named=True)
    )


def job_timeline(job: Job, tasks: list[Task], events: list, *, now: datetime | None = None) -> Timeline:
    """Each task's life as segments (blocked, queued, running, backoff, review), placed
    on one time axis from the job's submission to its end (or now), and its attempts."""
    now = now or timezone.now()
    by_task: dict = defaultdict(list)
    for event in events:
        if event.task_id:
            by_task[event.task_id].append(event)

    start = job.created_at
    end = job.finished_at or now
    total = max((end - start).total_seconds(), 0.001)
    rows = []
    for task in tasks:
        view = TaskView(task)
        state, kind, since = TaskStatus.PENDING, "blocked", task.created_at
        for event in by_task[task.id]:
            view.segments.append(Segment(kind, since, event.at, end_status=event.status))
            view.attempts.extend(_attempt_lines(event))
            state, since = event.status, event.at
            kind = "backoff" if event.type == "task.retry" else SEGMENT_KIND.get(state, "")
        if state not in TASK_TERMINAL and kind:
            view.segments.append(Segment(kind, since, end, open=job.finished_at is None))
        view.segments = [s for s in view.segments if s.kind and s.end > s.start]
        for s in view.segments:
            s.left = round(100 * (s.start - start).total_seconds() / total, 2)
            s.width = round(100 * (s.end - s.start).total_seconds() / total, 2)
        rows.append(view)
    return Timeline(rows=rows, start=start, seconds=round(total, 2))


def _attempt_lines(event) -> list[str]:
    data = event.data or {}
    attempt = data.get("attempt")
    label = f"attempt {attempt}" if attempt else "task"
    if event.type == "task.retry":
        return [f"{label} failed: {data.get('error', '')} (retry in {data.get('retry_in', '?')}s)"]
    if event.status == TaskStatus.RUNNING:
        worker = data.get("worker")
        return [f"{label} started" + (f" on {worker}" if worker else "")]
    if event.status == TaskStatus.SUCCEEDED:
        return [f"{label} succeeded"]
    if event.status == TaskStatus.FAILED:
        return [f"{label} failed for good: {data.get('error', '')}"]
    if event.status == TaskStatus.PENDING and data.get("retried_from"):
        return [f"retried by the user (was {data['retried_from']})"]
    if event.status in (TaskStatus.CANCELLED, TaskStatus.SKIPPED):
        return [f"{event.status}" + (f": {data['error']}" if data.get("error") else "")]
    return []
