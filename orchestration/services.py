"""The orchestrator's decisions: plan a job, dispatch ready tasks, skip, finish.

Everything here reads the truth from PostgreSQL and is idempotent, so it can run again
after a crash, a lost message or a leader change without doing anything twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from jobs.budgets import BUDGET_FIELDS, job_budget_stop, jobs_over_budget
from jobs.events import NewEvent, events_append
from jobs.models import JOB_ACTIVE, JOB_TERMINAL, Job, JobStatus, Task, TaskStatus
from jobs.reviews import before_gates_hold, plan_gate_hold
from orchestration.planner import PLANNER_AGENT, job_plan_step
from workers.queue import TaskMessage, messages_waiting, tasks_enqueue

logger = logging.getLogger(__name__)

# The columns job_advance needs; loading whole rows would drag every input and output.
_TASK_FIELDS = (
    "id", "key", "status", "depends_on", "allow_failure", "attempt", "max_attempts",
    "queue", "timeout", "next_attempt_at", "error", "review",
)  # fmt: skip


def job_advance(job_id) -> bool:
    """Bring one job forward from what PostgreSQL says about it; True if it changed.

    1. Lock the job row; if another orchestrator holds it, leave the job to it.
    2. A submitted job gets its Task rows written from the plan and starts running;
       with ``review_plan`` it first waits, ``awaiting_review``, for a human to approve.
    3. Tasks downstream of a task that failed for good are skipped (a task with
       ``allow_failure`` counts as done for its dependents).
    4. Pending tasks whose dependencies all succeeded, and whose retry backoff (if any)
       has passed, are claimed with a conditional UPDATE and sent to their queue on
       commit: a task is never dispatched twice for the same attempt. A task gated
       ``"review": "before"`` waits, ``awaiting_review``, for its input's approval first.
    5. When no task is left unfinished, the job succeeds (or fails if a task failed
       without ``allow_failure``) with the outputs of its final tasks as the result.
    6. The job is marked as seen up to its newest event, for the reconciler.
    """
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(skip_locked=True)
            .only("id", "status", "plan", "review_plan", "remember", "last_seq", "advanced_seq", *BUDGET_FIELDS)
            .filter(pk=job_id)
            .first()
        )
        if job is None:
            return False
        if job.status in JOB_TERMINAL or job.status == JobStatus.AWAITING_REVIEW:
            return _mark_seen(job)
        if job_budget_stop(job):  # past its deadline or over its token budget (jobs.budgets)
            return True

        events: list[NewEvent] = []
        now = timezone.now()
        # No plan yet: the planner agent's task makes one (orchestration.planner); once
        # it has, job.plan is set and the job goes on as if submitted with that plan.
        planning = None
        if job.plan is None and job.status in (JobStatus.SUBMITTED, JobStatus.PLANNING):
            planning = job_plan_step(job, now, events)
        if planning is not None and job.plan is None:
            tasks = planning
        elif job.status in (JobStatus.SUBMITTED, JobStatus.PLANNING):
            if plan_gate_hold(job=job, events=events):
                # The plan waits for a human (jobs.reviews): nothing is written or run yet.
                events_append(job.id, events)
                Job.objects.filter(pk=job.id).update(advanced_seq=job.last_seq + len(events))
                return True
            tasks = _job_write_tasks(job, now, events)
        else:
            tasks = list(Task.objects.filter(job_id=job.id).only(*_TASK_FIELDS))

        by_key = {t.key: t for t in tasks}
        _skip_downstream_of_failures(tasks, by_key, now, events)
        messages = _dispatch_ready(tasks, by_key, now, events)
        _finish_if_done(job, tasks, now, events)

        events_append(job.id, events)
        job.advanced_seq = job.last_seq + len(events)
        Job.objects.filter(pk=job.id).update(advanced_seq=job.advanced_seq)
        if messages:
            transaction.on_commit(lambda: tasks_enqueue(messages), robust=True)
        return bool(events)


def _mark_seen(job: Job) -> bool:
    if job.advanced_seq != job.last_seq:
        Job.objects.filter(pk=job.id).update(advanced_seq=job.last_seq)
    return False


def _job_write_tasks(job: Job, now, events: list[NewEvent]) -> list[Task]:
    tasks = [
        Task(
            job_id=job.id,
            key=spec["key"],
            agent=spec["agent"],
            queue=spec["queue"],
            input=spec.get("input", {}),
            depends_on=spec.get("depends_on", []),
            review=spec.get("review", "none"),
            allow_failure=spec.get("allow_failure", False),
            max_attempts=spec["max_attempts"],
            timeout=spec["timeout"],
            created_at=now,
        )
        for spec in job.plan["tasks"]
    ]
    Task.objects.bulk_create(tasks)
    Job.objects.filter(pk=job.id).update(status=JobStatus.RUNNING, started_at=now)
    job.status = JobStatus.RUNNING
    events.append(NewEvent("job.status", status=JobStatus.RUNNING, data={"tasks": len(tasks)}))
    return tasks


def _is_done_for_dependents(task: Task) -> bool:
    return task.status == TaskStatus.SUCCEEDED or (task.status == TaskStatus.FAILED and task.allow_failure)


def _skip_downstream_of_failures(tasks: list[Task], by_key: dict, now, events: list[NewEvent]) -> None:
    never_succeeds = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)
    to_skip: list[Task] = []
    changed = True
    while changed:  # propagate down the DAG; a job has few tasks, so a fixpoint is cheap
        changed = False
        for task in tasks:
            if task.status != TaskStatus.PENDING:
                continue
            for dep in task.depends_on:
                upstream = by_key[dep]
                if upstream.status in never_succeeds and not _is_done_for_dependents(upstream):
                    task.status = TaskStatus.SKIPPED
                    task.error = f"skipped: dependency '{dep}' {upstream.status}"
                    to_skip.append(task)
                    changed = True
                    break
    if not to_skip:
        return
    Task.objects.filter(id__in=[t.id for t in to_skip], status=TaskStatus.PENDING).update(
        status=TaskStatus.SKIPPED,
        error=Case(*(When(id=t.id, then=Value(t.error)) for t in to_skip)),
        finished_at=now,
    )
    events.extend(
        NewEvent("task.status", task_id=t.id, status=TaskStatus.SKIPPED, data={"key": t.key, "error": t.error})
        for t in to_skip
    )


def _dispatch_ready(tasks: list[Task], by_key: dict, now, events: list[NewEvent]) -> list[TaskMessage]:
    ready = [
        t
        for t in tasks
        if t.status == TaskStatus.PENDING
        and (t.next_attempt_at is None or t.next_attempt_at <= now)
        and all(_is_done_for_dependents(by_key[d]) for d in t.depends_on)
    ]
    # Tasks gated "before" wait instead for a human to approve their input (jobs.reviews).
    ready = before_gates_hold(ready, events=events)
    if not ready:
        return []
    claimed = Task.objects.filter(id__in=[t.id for t in ready], status=TaskStatus.PENDING).update(
        status=TaskStatus.QUEUED, attempt=F("attempt") + 1, queued_at=now, next_attempt_at=None
    )
    if claimed != len(ready):  # cannot happen while we hold the job lock; be loud if it does
        logger.error("dispatch claimed %d of %d ready tasks", claimed, len(ready))
    messages = []
    for task in ready:
        task.status = TaskStatus.QUEUED
        task.attempt += 1
        messages.append(TaskMessage(str(task.id), task.attempt, task.queue, task.timeout))
        events.append(
            NewEvent(
                "task.status",
                task_id=task.id,
                status=TaskStatus.QUEUED,
                data={"key": task.key, "attempt": task.attempt},
            )
        )
    return messages


def _finish_if_done(job: Job, tasks: list[Task], now, events: list[NewEvent]) -> None:
    if any(
        t.status not in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)
        for t in tasks
    ):
        return
    failed = [t for t in tasks if t.status == TaskStatus.FAILED and not t.allow_failure]
    has_dependents = {dep for t in tasks for dep in t.depends_on}
    outputs = dict(
        Task.objects.filter(job_id=job.id, status=TaskStatus.SUCCEEDED)
        .exclude(key__in=has_dependents)
        .exclude(agent=PLANNER_AGENT)  # its output is the plan, not a result
        .values_list("key", "output")
    )
    if failed:
        first = failed[0]
        status = JobStatus.FAILED
        error = f"task '{first.key}' failed after {first.attempt} attempt(s): {first.error}"
    else:
        status, error = JobStatus.SUCCEEDED, ""
    Job.objects.filter(pk=job.id).update(status=status, error=error, result={"outputs": outputs}, finished_at=now)
    job.status = status
    events.append(NewEvent("job.status", status=status, data={"error": error} if error else {}))
    if status == JobStatus.SUCCEEDED and job.remember:
        # A job submitted with "remember": true stores its outputs as its owner's memories
        # (memory/), after commit, so a Chroma outage can never undo the job's success.
        from memory.services import memory_remember_job

        transaction.on_commit(lambda: memory_remember_job(job_id=job.id), robust=True)


# --- reconciliation: finding work whose message was lost ---------------------------------


def jobs_needing_attention(limit: int = 100) -> list:
    """Active jobs with events the orchestrator has not acted on, and jobs with a retry
    whose backoff has passed. Both read partial indexes over active rows only."""
    stale = Job.objects.filter(status__in=JOB_ACTIVE, last_seq__gt=F("advanced_seq")).values_list("id", flat=True)[
        :limit
    ]
    due = (
        Task.objects.filter(status=TaskStatus.PENDING, next_attempt_at__lte=timezone.now())
        .values_list("job_id", flat=True)
        .distinct()[:limit]
    )
    return list(dict.fromkeys([*stale, *due, *jobs_over_budget(limit)]))


def tasks_requeue_lost(limit: int = 100) -> int:
    """Send again the message of tasks queued for longer than AGENTBUS_REQUEUE_AFTER
    without a worker starting them: their message was lost (Redis flushed or restarted).
    A duplicate is harmless: a worker claims an attempt only while it is queued."""
    cutoff = timezone.now() - timedelta(seconds=settings.AGENTBUS_REQUEUE_AFTER)
    lost = list(
        Task.objects.filter(status=TaskStatus.QUEUED, queued_at__lt=cutoff).only("id", "attempt", "queue", "timeout")[
            :limit
        ]
    )
    if not lost:
        return 0
    messages = [TaskMessage(str(t.id), t.attempt, t.queue, t.timeout) for t in lost]
    # A message still waiting in its queue (workers busy) is not lost: leave it, and look
    # again only after another AGENTBUS_REQUEUE_AFTER.
    waiting = messages_waiting(messages)
    Task.objects.filter(id__in=[t.id for t in lost], status=TaskStatus.QUEUED).update(queued_at=timezone.now())
    resend = [m for m in messages if m.task_id not in waiting]
    if resend:
        tasks_enqueue(resend)
        logger.warning("re-sent %d task messages that no worker picked up", len(resend))
    return len(resend)


def tasks_fail_silent(limit: int = 100) -> int:
    """Running tasks whose worker stopped beating (killed, machine gone) lose their attempt
    and are retried per their policy."""
    from workers.services import task_fail_attempt

    cutoff = timezone.now() - timedelta(seconds=settings.AGENTBUS_TASK_HEARTBEAT_TIMEOUT)
    silent = list(Task.objects.filter(status=TaskStatus.RUNNING, heartbeat_at__lt=cutoff)[:limit])
    for task in silent:
        task_fail_attempt(
            task=task,
            error=f"worker {task.worker or '?'} stopped heartbeating (lost or killed)",
            retryable=True,
        )
    return len(silent)
