"""The job lifecycle: every Job and Task state change, in one place.

Nothing else writes a Job or Task status. REST views and pages (through jobs.services),
admin actions, the worker's entry point, the orchestrator's timers and reconciler, review
decisions and budgets all call a function here. Review rows are written by
jobs.reviews.gates, which this module calls to hold and release work at a gate.

Lock order, for every function here and every transaction that calls one:

1. the job row (``SELECT ... FOR UPDATE``), always first;
2. then its tasks (conditional UPDATEs: ``WHERE status = ... AND attempt = ...``);
3. then its reviews;
4. last, only in a worker's success: the admission lock (jobs.scheduling), for the
   waiting work the success's slot admits before it commits.

The job row lock serialises every writer of one job, so two transitions of the same job
never interleave and cannot deadlock; the event log's sequence numbers are taken on the
same row (jobs.events), after it. Two writes happen outside the lock, and neither
changes a status or waits while it holds a row: a heartbeat (one row, one statement),
and jobs.scheduling's admission of queued tasks, which marks them sent (``sent_at``,
``wait_reason``) on rows it takes with SKIP LOCKED, in a transaction of its own or at
the end of a success's (step 4): it never waits for a row, so never for a job.

Every transition ends by *settling* the job (``_settle``), in the same transaction:

1. a job over its budget (deadline, tokens) ends, failed, with the reason;
2. a job without a plan gets its planner task, and takes the plan once it has run;
3. a plan waits at its plan review, or becomes Task rows and the job runs;
4. pending tasks downstream of a task that failed for good are skipped (``allow_failure``
   counts as done for dependents);
5. pending tasks whose dependencies are done and whose backoff has passed are dispatched
   (``_dispatch``, the one place a task becomes queued), or held at a "before" gate; a
   queued task is sent to its queue now, or waits in PostgreSQL for a free worker, in
   the order jobs.scheduling decides (priority, fair shares, concurrency keys, rate
   limits);
6. a job with nothing left unfinished ends, with the outputs of its final tasks.

The queue messages are sent on commit. So a task's success dispatches its dependents and
a submission its roots with no orchestrator on the way; the orchestrator calls
``job_advance`` only for what needs a clock or a recovery: retry backoffs falling due,
deadlines, lost messages, silent workers.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.db.models.expressions import DatabaseDefault
from django.db.models.sql import InsertQuery
from django.dispatch import Signal
from django.utils import timezone

from agents.rate_limits import tokens_record
from agents.registry import agent_get
from core.errors import ApplicationError, Conflict, Gone
from core.queue import TaskMessage, tasks_enqueue
from core.wakeup import orchestrator_wake
from jobs.budgets import budget_exceeded
from jobs.events import EventType, NewEvent, Seen, advance_sql, events_append, events_appended, events_insert_sql
from jobs.models import (
    JOB_TERMINAL,
    TASK_TERMINAL,
    Job,
    JobStatus,
    Review,
    ReviewKind,
    ReviewMode,
    Task,
    TaskStatus,
)
from jobs.plans import (
    PLANNER_AGENT,
    PLANNER_MAX_ATTEMPTS,
    PLANNER_TASK_KEY,
    PLANNER_TIMEOUT,
    plan_check,
    plan_problems,
    task_rows,
    task_scheduling,
)
from jobs.reviews import gates
from jobs.scheduling import admission_ask, admit_with_success, dispatch_plan, task_message
from jobs.spawn import spawn_validate

logger = logging.getLogger(__name__)

# Sent on commit when a job reaches a terminal status, with ``job_id``, ``status``,
# ``owner_id`` and ``remember``. Memory (``"remember": true``) listens; the lifecycle
# knows none of its listeners.
job_finished = Signal()

# What a job row lock loads: everything settling reads, nothing it does not (the plan is
# small; inputs and outputs live on the tasks).
_JOB_FIELDS = (
    "id", "owner_id", "status", "plan", "review_plan", "remember", "last_seq", "advanced_seq",
    "max_tasks", "max_tokens", "tokens_used", "deadline_at", "started_at", "priority", "concurrency_key",
    "concurrency_limit",
)  # fmt: skip

# The task columns settling needs; whole rows would drag every input and output along.
_TASK_FIELDS = (
    "id", "key", "agent", "status", "depends_on", "allow_failure", "attempt", "max_attempts",
    "queue", "timeout", "next_attempt_at", "error", "review", "concurrency_key",
)  # fmt: skip

# Tasks that no dependent may wait for any longer.
_NEVER_SUCCEEDS = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)

# Tasks a retry of a finished job runs again: those that failed, and those that never ran
# because of them.
RETRYABLE_TASK_STATUSES = _NEVER_SUCCEEDS


@dataclass
class Change:
    """One transition of one job, under its row lock: the events it writes and the queue
    messages it sends on commit."""

    job: Job
    now: datetime = field(default_factory=timezone.now)
    events: list[NewEvent] = field(default_factory=list)
    messages: list[TaskMessage] = field(default_factory=list)
    # The job's tasks (_TASK_FIELDS), once loaded or written by this change.
    tasks: list[Task] | None = None
    # Outputs this change wrote, by task key (the job's result needs no read of them).
    outputs: dict = field(default_factory=dict)
    # Columns of the job row to write with the events, by field name (its end): set on
    # the loaded row at once, written by _commit in the events' statement.
    job_set: dict = field(default_factory=dict)

    def event(self, type: EventType, *, task: Task | None = None, status: str = "", **data) -> None:
        if task is not None:
            data = {"key": task.key, **data}
        self.events.append(NewEvent(type, task_id=task.id if task else None, status=status, data=data))

    def task_status(self, task: Task, status: str, **data) -> None:
        self.event(EventType.TASK_STATUS, task=task, status=status, **data)

    def job_status(self, status: str, **data) -> None:
        self.event(EventType.JOB_STATUS, status=status, **data)


# --- locking and committing -----------------------------------------------------------------


def _lock(job_id, *, skip_locked: bool = False, fields=_JOB_FIELDS) -> Change | None:
    """Step 1 of the lock order: the job row. None if it does not exist (or, with
    ``skip_locked``, if another process holds it and will settle it).

    Hand-written SQL: this runs several times for every task, and building the query
    through the ORM cost more CPU than the query itself (bench/pipeline.py)."""
    # Columns by name, never ``*``: a prepared statement whose result gains a column (a
    # migration while this process runs) fails with "cached plan must not change result type".
    columns = ", ".join(_JOB_COLUMNS[f] for f in fields) if fields else _JOB_ALL_COLUMNS
    lock = (" FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE") if _can_lock() else ""
    sql = f"SELECT {columns} FROM jobs_job WHERE id = %s{lock}"
    job = next(iter(Job.objects.raw(sql, [_job_pk(job_id)])), None)
    return Change(job=job) if job is not None else None


def _lock_by_task(task_id) -> Change | None:
    """The job row of a task, locked (the worker knows only the task id); ``OF j`` so
    that the join does not lock the task row before its job. Used by SQLite's claim;
    PostgreSQL claims in one statement (_CLAIM_SQL)."""
    lock = " FOR UPDATE OF j" if _can_lock() else ""
    sql = f"SELECT j.* FROM jobs_job j JOIN jobs_task t ON t.job_id = j.id WHERE t.id = %s{lock}"
    job = next(iter(Job.objects.raw(sql, [_job_pk(task_id)])), None)
    return Change(job=job) if job is not None else None


_JOB_CONCRETE = Job._meta.concrete_fields
_JOB_COLUMNS = {f.name: f.column for f in _JOB_CONCRETE} | {"owner_id": "owner_id"}
_JOB_ALL_COLUMNS = ", ".join(f.column for f in _JOB_CONCRETE)
_TASK_COLUMNS = ", ".join(Task._meta.get_field(f).column for f in _TASK_FIELDS)


def _can_lock() -> bool:
    return connection.features.has_select_for_update  # SQLite (make run) serialises writers instead


def _job_pk(value):
    return Job._meta.pk.get_db_prep_value(value, connection)


def _commit(change: Change, *, seen: Seen = Seen.SETTLED) -> None:
    """Append the change's events (marking the job settled) and send its messages on commit."""
    _send_on_commit(change)
    rows = events_append(change.job.id, change.events, seen=seen, job_set=change.job_set)
    change.job_set = {}
    change.job.last_seq += len(rows)


def _send_on_commit(change: Change) -> None:
    """The change's queue messages, sent on commit; registered before the events'
    publishing, so the workers are told first (the watchers a moment later)."""
    if change.messages:
        messages = list(change.messages)
        transaction.on_commit(lambda: tasks_enqueue(messages), robust=True)


def _running(task: Task):
    """The attempt is still the running one: the condition of every write a worker makes."""
    return Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempt=task.attempt)


def _tasks(change: Change) -> list[Task]:
    """The job's tasks (_TASK_FIELDS), read once per change, by the task_job_key index;
    SQL by hand for the same reason as _lock."""
    if change.tasks is None:
        sql = f"SELECT {_TASK_COLUMNS} FROM jobs_task WHERE job_id = %s ORDER BY created_at, key"
        change.tasks = list(Task.objects.raw(sql, [_job_pk(change.job.id)]))
    return change.tasks


def _forget_tasks(change: Change) -> None:
    """A write changed task rows behind the loaded list: read them again when settling."""
    change.tasks = None


# --- submission and the orchestrator's entry point --------------------------------------------


def job_create(*, owner, fields: dict) -> Job:
    """Write a new job (inside the caller's transaction) and settle it: with an explicit
    plan (and no plan review) its Task rows are written and its roots dispatched before
    the submission commits; the job row is inserted already running.

    On PostgreSQL such a job, unless a root waits at a "before" gate, is settled in
    memory first and written with its tasks and its events in one statement (an INSERT
    of each, one round trip instead of three): settling a new job reads nothing but the
    queues' counts (jobs.scheduling), and its reviews are the only rows it would need
    to find in the database."""
    now = timezone.now()
    runs_now = fields.get("plan") is not None and not fields.get("review_plan")
    status = JobStatus.RUNNING if runs_now else JobStatus.SUBMITTED
    job = Job(owner=owner, status=status, started_at=now if runs_now else None, **fields)
    change = Change(job=job, now=now, tasks=[])
    change.job_status(JobStatus.SUBMITTED, tasks=len((job.plan or {}).get("tasks", ())))
    # A job over its budget already (a deadline that has passed) ends at once: the old path.
    at_once = (
        runs_now
        and connection.vendor == "postgresql"
        and not _gated_roots(job.plan["tasks"])
        and budget_exceeded(job, now) is None
    )
    if at_once:
        _db_defaults_resolve(job)
    else:
        job.save(force_insert=True)
    if runs_now:
        _write_plan(change, status_written=True, insert=not at_once)
    _settle(change)
    if at_once:
        _insert_new_job(change)
    else:
        _commit(change)
    return job


def _db_defaults_resolve(row) -> None:
    """Give the columns left to their ``db_default`` its value now, as save() does by
    reading them back: settling reads them (a job's concurrency key) before the insert."""
    for f in row._meta.concrete_fields:
        if isinstance(getattr(row, f.attname), DatabaseDefault):
            setattr(row, f.attname, f.db_default.value if isinstance(f.db_default, Value) else f.db_default)


def _gated_roots(specs: list[dict]) -> bool:
    return any(not t.get("depends_on") and t.get("review") == ReviewMode.BEFORE for t in specs)


def _insert_new_job(change: Change) -> None:
    """The job row, its tasks and its events (numbered from 1, the job settled), in one
    statement; published and sent on commit, as _commit does."""
    job, count = change.job, len(change.events)
    job.last_seq = job.advanced_seq = count
    job_sql, job_params = _insert_sql(Job, [job])
    task_sql, task_params = _insert_sql(Task, change.tasks)
    events_sql, events_params = events_insert_sql(job.id, change.events, now=change.now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH j AS ({job_sql}), t AS ({task_sql}) {events_sql}", [*job_params, *task_params, *events_params]
        )
    for row in (job, *change.tasks):  # saved now, as save() would leave them
        row._state.adding, row._state.db = False, connection.alias
    change.job_set = {}  # the row was inserted with its attributes, these among them
    _send_on_commit(change)
    events_appended(job.id, change.events, last=count, owner_id=job.owner_id, now=change.now)


def _insert_sql(model, rows: list) -> tuple[str, list]:
    """Django's INSERT of these unsaved rows (its field conversions and pre-saves: the
    ``created_at`` stamps), as SQL to run inside another statement."""
    fields = [f for f in model._meta.concrete_fields if not f.generated]
    for row in rows:
        _db_defaults_resolve(row)
    query = InsertQuery(model)
    query.insert_values(fields, rows)
    ((sql, params),) = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def job_advance(job_id) -> bool:
    """The orchestrator's way in: settle a job from what PostgreSQL says about it (a
    retry whose backoff passed, a deadline, a job whose settling was lost). A job another
    process holds is left to it. True if anything changed."""
    with transaction.atomic():
        change = _lock(job_id, skip_locked=True)
        if change is None:
            return False
        _settle(change)
        if change.events:
            _commit(change)
        elif change.job.advanced_seq != change.job.last_seq:
            Job.objects.filter(pk=job_id).update(advanced_seq=change.job.last_seq)
        return bool(change.events)


# --- settling -------------------------------------------------------------------------------


def _settle(change: Change) -> None:
    """Bring the locked job forward (the numbered steps of the module docstring)."""
    job = change.job
    if job.status in JOB_TERMINAL or job.status == JobStatus.AWAITING_REVIEW:
        return
    reason = budget_exceeded(job, change.now)
    if reason is not None:
        _end(change, JobStatus.FAILED, reason)
        return
    # Without a plan, the planner's task runs first (settled below like any task).
    planning = job.status in (JobStatus.SUBMITTED, JobStatus.PLANNING)
    if planning and (job.plan is not None or _plan_step(change)):
        if _plan_gate_hold(change):
            return
        _write_plan(change)
    tasks = _tasks(change)
    by_key = {t.key: t for t in tasks}
    _skip_downstream_of_failures(change, tasks, by_key)
    ready = [
        t
        for t in tasks
        if t.status == TaskStatus.PENDING
        and (t.next_attempt_at is None or t.next_attempt_at <= change.now)
        and all(_done_for_dependents(by_key[d]) for d in t.depends_on)
    ]
    _dispatch(change, _before_gates_hold(change, ready))
    _finish_if_done(change, tasks)


def _plan_step(change: Change) -> bool:
    """A job without a plan: create its planner task, or, once that has succeeded, take
    its plan. True when the job now has a plan."""
    job = change.job
    tasks = _tasks(change)
    planner = next((t for t in tasks if t.key == PLANNER_TASK_KEY), None)
    if planner is None:
        planner = Task.objects.create(
            job_id=job.id,
            key=PLANNER_TASK_KEY,
            agent=PLANNER_AGENT,
            queue=settings.AGENTBUS_PLANNER_QUEUE,
            max_attempts=PLANNER_MAX_ATTEMPTS,
            timeout=PLANNER_TIMEOUT,
            created_at=change.now,
            **task_scheduling(job),
        )
        tasks.append(planner)
        _job_set(change, JobStatus.PLANNING, started_at=change.now)
        return False
    if planner.status != TaskStatus.SUCCEEDED:
        return False
    output = Task.objects.filter(pk=planner.pk).values_list("output", flat=True).get() or {}
    try:
        specs = plan_check(output.get("plan"), max_tasks=job.max_tasks)
    except ApplicationError as exc:  # an agent vanished between planning and now
        error = f"the plan is no longer valid: {plan_problems(exc)}"
        Task.objects.filter(pk=planner.pk).update(status=TaskStatus.FAILED, error=error)
        planner.status, planner.error = TaskStatus.FAILED, error
        change.task_status(planner, TaskStatus.FAILED, error=error)
        return False
    job.plan = {"tasks": specs}
    Job.objects.filter(pk=job.id).update(plan=job.plan)
    change.event(EventType.JOB_PLANNED, tasks=[t["key"] for t in specs])
    return True


def _plan_gate_hold(change: Change) -> bool:
    """With ``review_plan``, the plan waits for a human before any task row is written."""
    job = change.job
    if not job.review_plan:
        return False
    if Review.objects.filter(job_id=job.id, kind=ReviewKind.PLAN, decision__in=gates.PASSING).exists():
        return False
    _job_set(change, JobStatus.AWAITING_REVIEW, review="plan")
    gates.review_open(job_id=job.id, kind=ReviewKind.PLAN, proposed=job.plan, events=change.events)
    return True


def _write_plan(change: Change, *, status_written: bool = False, insert: bool = True) -> None:
    """The plan becomes Task rows and the job runs (``status_written``: the job row is
    inserted running, by job_create; ``insert=False``: job_create inserts the rows)."""
    job = change.job
    rows = task_rows(job=job, specs=job.plan["tasks"], now=change.now)
    _tasks(change).extend(rows)
    _job_set(
        change, JobStatus.RUNNING, started_at=job.started_at or change.now, written=status_written, tasks=len(rows)
    )
    # The roots are ready already: dispatched before the rows are written, they are
    # inserted queued (no UPDATE after the INSERT). Those gated "before" wait for
    # settling, which opens their reviews on rows that exist.
    _dispatch(change, [t for t in rows if not t.depends_on and t.review != ReviewMode.BEFORE], unsaved=True)
    if insert:
        Task.objects.bulk_create(rows)


def _job_set(change: Change, status: str, *, started_at=None, written: bool = False, **data) -> None:
    fields = {"status": status}
    if started_at is not None:
        fields["started_at"] = started_at
    if not written:
        Job.objects.filter(pk=change.job.id).update(**fields)
    for name, value in fields.items():
        setattr(change.job, name, value)
    change.job_status(status, **data)


def _done_for_dependents(task: Task) -> bool:
    return task.status == TaskStatus.SUCCEEDED or (task.status == TaskStatus.FAILED and task.allow_failure)


def _skip_downstream_of_failures(change: Change, tasks: list[Task], by_key: dict) -> None:
    to_skip: list[Task] = []
    changed = True
    while changed:  # propagate down the DAG; a job has few tasks, so a fixpoint is cheap
        changed = False
        for task in tasks:
            if task.status != TaskStatus.PENDING:
                continue
            for dep in task.depends_on:
                upstream = by_key[dep]
                if upstream.status in _NEVER_SUCCEEDS and not _done_for_dependents(upstream):
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
        finished_at=change.now,
    )
    for task in to_skip:
        change.task_status(task, TaskStatus.SKIPPED, error=task.error)


def _before_gates_hold(change: Change, ready: list[Task]) -> list[Task]:
    """Hold the ready tasks gated ``"review": "before"`` whose input no human approved yet
    (they become ``awaiting_review`` and a review opens); returns the rest."""
    gated = [t for t in ready if t.review == ReviewMode.BEFORE]
    if not gated:
        return ready
    passed = set(
        Review.objects.filter(
            task_id__in=[t.id for t in gated], kind=ReviewKind.BEFORE, decision__in=gates.PASSING
        ).values_list("task_id", flat=True)
    )
    hold = [t for t in gated if t.id not in passed]
    if not hold:
        return ready
    rows = {t.id: t for t in Task.objects.filter(id__in=[t.id for t in hold])}
    Task.objects.filter(id__in=list(rows), status=TaskStatus.PENDING).update(status=TaskStatus.AWAITING_REVIEW)
    for task in hold:
        task.status = TaskStatus.AWAITING_REVIEW
        change.task_status(task, TaskStatus.AWAITING_REVIEW, review="before")
        row = rows[task.id]
        gates.review_open(
            job_id=change.job.id,
            task=row,
            kind=ReviewKind.BEFORE,
            proposed=row.input,
            attempt=row.attempt,
            options=gates.gate_options(change.job.plan, row.key),
            events=change.events,
        )
    held = {t.id for t in hold}
    return [t for t in ready if t.id not in held]


def _dispatch(change: Change, ready: list[Task], *, unsaved: bool = False) -> None:
    """The one place a task is dispatched: claim the next attempt of each ready task with
    a conditional UPDATE (never twice for one attempt). Who runs first is
    jobs.scheduling's: what it lets through now is sent on commit (``sent_at``); the rest
    waits in PostgreSQL, queued, for its admission.

    ``unsaved``: the tasks are new rows the caller inserts next (a plan's roots); they
    take the same columns, set on the rows instead of by an UPDATE."""
    if not ready:
        return
    plan = dispatch_plan(ready)
    if unsaved:
        for task in ready:
            sent = task.id in plan.send_now
            task.queued_at = change.now
            task.sent_at, task.wait_reason = (change.now, "") if sent else (None, "capacity")
    else:
        claimed = Task.objects.filter(id__in=[t.id for t in ready], status=TaskStatus.PENDING).update(
            status=TaskStatus.QUEUED,
            attempt=F("attempt") + 1,
            queued_at=change.now,
            next_attempt_at=None,
            **_sent_columns(plan.send_now, change.now, everyone=len(plan.send_now) == len(ready)),
        )
        if claimed != len(ready):  # cannot happen while we hold the job lock; be loud if it does
            logger.error("dispatch claimed %d of %d ready tasks of job %s", claimed, len(ready), change.job.id)
    for task in ready:
        task.status = TaskStatus.QUEUED
        task.attempt += 1
        task.next_attempt_at = None
        if task.id in plan.send_now:
            change.messages.append(task_message(task, job_id=change.job.id))
            change.task_status(task, TaskStatus.QUEUED, attempt=task.attempt)
        else:
            change.task_status(task, TaskStatus.QUEUED, attempt=task.attempt, waiting=True)
    if plan.waiting_queues:
        waiting, admit = plan.waiting_queues, plan.admit_after
        transaction.on_commit(lambda: admission_ask(waiting, admit=admit), robust=True)


def _sent_columns(send_now: set, now, *, everyone: bool) -> dict:
    """``sent_at`` and ``wait_reason`` of dispatched tasks: sent now, or waiting."""
    if everyone:
        return {"sent_at": now, "wait_reason": ""}
    if not send_now:
        return {"sent_at": None, "wait_reason": "capacity"}
    return {
        "sent_at": Case(When(id__in=send_now, then=Value(now)), default=None, output_field=DateTimeField()),
        "wait_reason": Case(When(id__in=send_now, then=Value("")), default=Value("capacity")),
    }


def _finish_if_done(change: Change, tasks: list[Task]) -> None:
    if not tasks or any(t.status not in TASK_TERMINAL for t in tasks):
        return
    failed = [t for t in tasks if t.status == TaskStatus.FAILED and not t.allow_failure]
    has_dependents = {dep for t in tasks for dep in t.depends_on}
    # The result: the outputs of the final tasks (the planner's output is the plan, not
    # a result). One this change wrote is known already: a job ending with one task
    # (most do) reads none.
    finals = {
        t.key
        for t in tasks
        if t.status == TaskStatus.SUCCEEDED and t.key not in has_dependents and t.agent != PLANNER_AGENT
    }
    outputs = {key: change.outputs[key] for key in finals if key in change.outputs}
    if finals - outputs.keys():
        outputs |= dict(
            Task.objects.filter(job_id=change.job.id, key__in=finals - outputs.keys()).values_list("key", "output")
        )
    if failed:
        first = failed[0]
        error = f"task '{first.key}' failed after {first.attempt} attempt(s): {first.error}"
        _end(change, JobStatus.FAILED, error, result={"outputs": outputs}, all_done=True)
    else:
        _end(change, JobStatus.SUCCEEDED, "", result={"outputs": outputs}, all_done=True)


def _end(
    change: Change,
    status: str,
    reason: str,
    *,
    result: dict | None = None,
    keep_review=None,
    all_done: bool = False,
) -> None:
    """Ending a job, whatever the reason (its DAG finished, a cancel, a budget, a review
    that failed it): its unfinished tasks are cancelled (a running one stops at its
    worker's next heartbeat), its pending reviews close and leave the inboxes (their
    claims with them), and the job takes its terminal status, once.

    ``all_done``: every task is known to be finished (under this lock), so none is open
    and no review can be pending (a pending review holds its task or the job's plan);
    the two look-ups are skipped on the per-task path."""
    job = change.job
    open_tasks = (
        [] if all_done else list(Task.objects.filter(job_id=job.id).exclude(status__in=TASK_TERMINAL).only("id", "key"))
    )
    if open_tasks:
        Task.objects.filter(id__in=[t.id for t in open_tasks]).exclude(status__in=TASK_TERMINAL).update(
            status=TaskStatus.CANCELLED, finished_at=change.now, next_attempt_at=None, error=reason[:4000]
        )
        for task in open_tasks:
            change.task_status(task, TaskStatus.CANCELLED, **({"error": reason} if reason else {}))
        _forget_tasks(change)
    ended = {"status": status, "error": reason[:4000], "result": result, "finished_at": change.now}
    for name, value in ended.items():
        setattr(job, name, value)
    change.job_set |= ended  # written with the job's events, by _commit
    change.job_status(status, **({"error": reason} if reason else {}))
    if not all_done:
        gates.reviews_close_for_job(job_id=job.id, reason=reason or f"the job {status}", exclude=keep_review)
    finished = {"job_id": job.id, "status": status, "owner_id": job.owner_id, "remember": job.remember}
    transaction.on_commit(lambda: job_finished.send(sender=Job, **finished), robust=True)


# --- what users and operators do ------------------------------------------------------------


def job_cancel(*, job_id) -> Job:
    """Cancel a job and everything it holds open. Cancelling a finished job is a 409."""
    with transaction.atomic():
        change = _lock(job_id, fields=None)
        if change.job.status in JOB_TERMINAL:
            raise Conflict(f"The job is already {change.job.status}.", code="job_finished")
        _end(change, JobStatus.CANCELLED, "cancelled by the user")
        _commit(change)
    return change.job


def job_retry_failed(*, job_id) -> Job:
    """Run a failed or cancelled job's unfinished work again, keeping what succeeded.

    Failed, skipped and cancelled tasks go back to pending with a fresh attempt budget
    (as many attempts as they had, counted on from the attempt they reached, so attempt
    numbers stay unique and a late worker of an old attempt is still refused), and the
    job is settled at once: what is ready is dispatched in this transaction. Retrying a
    job that is not finished, or that succeeded, is a 409.
    """
    with transaction.atomic():
        change = _lock(job_id, fields=(*_JOB_FIELDS, "purged_at"))
        job = change.job
        if job.purged_at is not None:
            raise Gone("The job's inputs and outputs were purged (retention); it cannot run again.", code="job_purged")
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise Conflict(
                f"Only a failed or cancelled job can be retried; this one is {job.status}.", code="job_not_retryable"
            )
        retried = list(
            Task.objects.filter(job_id=job.id, status__in=RETRYABLE_TASK_STATUSES).only("id", "key", "status")
        )
        if not retried and Task.objects.filter(job_id=job.id).exists():
            raise Conflict("The job has no failed, skipped or cancelled task to retry.", code="nothing_to_retry")
        Task.objects.filter(id__in=[t.id for t in retried]).update(
            status=TaskStatus.PENDING,
            max_attempts=F("attempt") + F("max_attempts"),
            error="",
            output=None,
            progress=None,
            progress_message="",
            worker="",
            next_attempt_at=None,
            heartbeat_at=None,
            queued_at=None,
            sent_at=None,
            started_at=None,
            finished_at=None,
        )
        for task in retried:
            change.task_status(task, TaskStatus.PENDING, retried_from=task.status)
        # A job cancelled before it was planned has no tasks yet: it starts over as
        # submitted, and settling writes its tasks from the plan.
        status = JobStatus.RUNNING if job.started_at else JobStatus.SUBMITTED
        Job.objects.filter(pk=job.id).update(status=status, error="", result=None, finished_at=None)
        job.status = status
        change.job_status(status, retried=len(retried))
        _settle(change)
        _commit(change)
    return job


def job_requeue(*, job_id) -> int:
    """Send again the messages of a job's queued tasks that were sent, and run its
    waiting retries now (tasks waiting for their admission are left to it).

    For an operator who knows the queue lost messages (Redis flushed, a queue emptied in
    the RQ dashboard) and does not want to wait for the reconciler. A duplicate is
    harmless: a worker claims an attempt only while it is still queued. Returns how many
    tasks were sent or brought forward.
    """
    with transaction.atomic():
        change = _lock(job_id)
        queued = list(
            Task.objects.filter(job_id=job_id, status=TaskStatus.QUEUED, sent_at__isnull=False).only(
                "id", "job_id", "attempt", "queue", "timeout"
            )
        )
        Task.objects.filter(id__in=[t.id for t in queued], status=TaskStatus.QUEUED).update(sent_at=change.now)
        waiting = Task.objects.filter(job_id=job_id, status=TaskStatus.PENDING, next_attempt_at__gt=change.now).update(
            next_attempt_at=change.now
        )
        change.messages += [task_message(t) for t in queued]
        _settle(change)
        _commit(change)
    return len(queued) + waiting


def tasks_resend(*, job_id, tasks: list[Task]) -> int:
    """The reconciler's repair of lost messages: mark these queued tasks as sent now and
    send them again on commit (under the job's lock, so it orders with every other
    writer). Returns how many were still queued."""
    with transaction.atomic():
        change = _lock(job_id, skip_locked=True)
        if change is None:
            return 0
        now = timezone.now()
        still = Task.objects.filter(id__in=[t.id for t in tasks], status=TaskStatus.QUEUED, sent_at__isnull=False)
        current = {t.id for t in still.only("id")}
        still.update(sent_at=now)
        change.messages += [task_message(t) for t in tasks if t.id in current]
        _commit(change)
    return len(change.messages)


# --- what a worker does with an attempt ---------------------------------------------------------


def task_claim(*, task_id, attempt: int, worker: str) -> Task | None:
    """Mark an attempt running; None if it is not queued any more (a stale message).

    On PostgreSQL, one statement and no transaction around it: the job row's lock, the
    task's update and the "running" event commit together in one round trip, on every
    task's way to its agent (instead of BEGIN, claim, append, COMMIT: four)."""
    if connection.vendor == "postgresql":
        return _claim_in_one_statement(task_id, attempt, worker)
    with transaction.atomic():
        claimed = _claim_after_lock(task_id, attempt, worker)
        if claimed is None:
            return None
        change, task = claimed
        change.task_status(task, TaskStatus.RUNNING, attempt=attempt, worker=worker)
        _commit(change, seen=Seen.INFORMATIONAL)
    return task


# Both claims set the same columns. Every way of sending a task sets sent_at; the COALESCE
# keeps "running means sent" true whatever sent this message (jobs.scheduling counts
# in-flight tasks by sent_at alone).
_CLAIM_SET = (
    "status = %s, started_at = %s, heartbeat_at = %s, worker = %s, error = '', "
    "sent_at = COALESCE(jobs_task.sent_at, %s)"
)
_CLAIM_SQL = (
    # Step 1 of the lock order, the job row (``OF j``: the join does not lock the task
    # row); then the task row, whose UPDATE reads the locked job. A task that is no longer
    # queued matches nothing, so nothing below it runs either and nothing comes back.
    "WITH j AS (SELECT j.* FROM jobs_job j JOIN jobs_task t ON t.job_id = j.id WHERE t.id = %s FOR UPDATE OF j), "
    f"t AS (UPDATE jobs_task SET {_CLAIM_SET} FROM j "
    "WHERE jobs_task.id = %s AND jobs_task.job_id = j.id AND jobs_task.status = %s AND jobs_task.attempt = %s "
    # Columns by name, as in _lock: a prepared statement's result must not change shape.
    "RETURNING "
    + ", ".join(f"jobs_task.{f.column}" for f in Task._meta.concrete_fields)
    + ", "
    + ", ".join(f"j.{f.column} AS job__{f.attname}" for f in _JOB_CONCRETE)
    + "), "
    # The "running" event, numbered as jobs.events numbers every append (the locked job
    # row's last_seq; informational, so the job stays as seen as it was).
    "s AS (UPDATE jobs_job SET last_seq = last_seq + 1, "
    f"advanced_seq = {advance_sql(Seen.INFORMATIONAL, 1)} "
    "WHERE id = (SELECT job_id FROM t) RETURNING last_seq, advanced_seq), "
    "e AS (INSERT INTO jobs_jobevent (job_id, seq, type, task_id, status, data, at) "
    "SELECT t.job_id, s.last_seq, %s, t.id, %s, jsonb_build_object('key', t.key, 'attempt', t.attempt, 'worker', t.worker), "
    "t.started_at FROM t, s) "
    "SELECT t.*, s.last_seq AS job__last_seq_now, s.advanced_seq AS job__advanced_seq_now FROM t, s"
)
# The job's columns come back as extra columns of the task, which Django does not convert
# (JSON arrives as text): each goes through its field's conversion, as in a model read.
_JOB_CONVERTERS = [(f"job__{f.attname}", getattr(f, "from_db_value", None)) for f in _JOB_CONCRETE]
_JOB_ATTNAMES = [f.attname for f in _JOB_CONCRETE]


def _claim_in_one_statement(task_id, attempt: int, worker: str) -> Task | None:
    now = timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    pk = _job_pk(task_id)
    params = [pk, TaskStatus.RUNNING, at, at, worker, at, pk, TaskStatus.QUEUED, attempt]
    params += [str(EventType.TASK_STATUS), TaskStatus.RUNNING]
    task = next(iter(Task.objects.raw(_CLAIM_SQL, params)), None)
    if task is None:
        return None
    values = []
    for name, convert in _JOB_CONVERTERS:
        value = task.__dict__.pop(name)
        values.append(convert(value, None, connection) if convert else value)
    task.job = Job.from_db(connection.alias, _JOB_ATTNAMES, values)
    task.job.last_seq = task.__dict__.pop("job__last_seq_now")
    task.job.advanced_seq = task.__dict__.pop("job__advanced_seq_now")
    # The event the statement inserted, as every change writes it (SQLite's claim too),
    # published as every append is, the statement having committed.
    change = Change(job=task.job, now=now)
    change.task_status(task, TaskStatus.RUNNING, attempt=attempt, worker=worker)
    events_appended(task.job_id, change.events, last=task.job.last_seq, owner_id=task.job.owner_id, now=now)
    return task


def _claim_after_lock(task_id, attempt: int, worker: str) -> tuple[Change, Task] | None:
    """SQLite's claim (no row locks, and RETURNING cannot read an UPDATE's FROM): the job
    row first, then the task's UPDATE, which reads it back."""
    change = _lock_by_task(task_id)
    if change is None:
        return None
    at = connection.ops.adapt_datetimefield_value(change.now)
    sql = f"UPDATE jobs_task SET {_CLAIM_SET} WHERE id = %s AND status = %s AND attempt = %s RETURNING *"
    params = [TaskStatus.RUNNING, at, at, worker, at, _job_pk(task_id), TaskStatus.QUEUED, attempt]
    task = next(iter(Task.objects.raw(sql, params)), None)
    if task is None:
        return None
    task.job = change.job
    return change, task


def task_heartbeat(*, task_id, attempt: int) -> bool:
    """Prove the attempt is alive; False when it is no longer the running one (cancelled,
    or declared lost), which tells the worker to stop it. One row, one statement: the
    one write that does not take the job lock first, since it waits on nothing else."""
    return (
        Task.objects.filter(pk=task_id, status=TaskStatus.RUNNING, attempt=attempt).update(heartbeat_at=timezone.now())
        == 1
    )


def task_progress(*, task: Task, fraction: float, message: str = "") -> bool:
    fraction = max(0.0, min(1.0, float(fraction)))
    message = str(message)[:200]
    with transaction.atomic():
        change = _lock(task.job_id, fields=("id", "last_seq", "advanced_seq"))
        done = _running(task).update(progress=fraction, progress_message=message, heartbeat_at=change.now)
        if done == 1:
            change.event(EventType.TASK_PROGRESS, task=task, progress=fraction, message=message)
            _commit(change, seen=Seen.INFORMATIONAL)
    return done == 1


@dataclass(frozen=True)
class Succeeded:
    """What task_succeed did: true when the output was committed. ``handoff`` is a task
    for the caller to run itself, not sent to Redis: a dependent it dispatched, or one
    it admitted (``admitted``: it looked for waiting work on the caller's queue, so the
    worker has no admission of its own to make after this attempt)."""

    committed: bool
    handoff: TaskMessage | None = None
    admitted: bool = False

    def __bool__(self) -> bool:
        return self.committed


def task_succeed(*, task: Task, output, spawn: list | None = None, handoff_queue: str | None = None) -> Succeeded:
    """Commit the attempt's output and settle the job: the dependents that became ready
    are dispatched in the same transaction. False if the attempt is no longer the running
    one.

    ``handoff_queue``: the queue the calling worker serves. One dependent dispatched to
    it is handed back instead of sent (``Succeeded.handoff``), so the worker runs it next
    without a round trip through Redis (AGENTBUS_EAGER_HANDOFF; Temporal calls this eager
    execution). Its dispatch is committed like any other: if the worker dies before
    claiming it, the reconciler sends it after AGENTBUS_REQUEUE_AFTER. When none is, the
    slot this success frees admits waiting work in the same transaction
    (jobs.scheduling.admit_with_success), and the first task admitted to the queue is
    handed back the same way.

    ``spawn`` holds follow-up tasks the agent returned, validated under the job's lock (so
    concurrent spawns respect max_tasks) and written with the output. An invalid spawn
    raises NonRetryableError and commits nothing. A task gated ``"review": "after"``
    holds its output for a human instead (its spawns are not taken).
    """
    specs: list[dict] = []
    with transaction.atomic():
        if task.review != ReviewMode.AFTER and not spawn and _can_lock():
            change, done = _lock_and_succeed(task, output)
        else:
            change = _lock(task.job_id)
            if task.review == ReviewMode.AFTER:
                return Succeeded(_output_hold(change, task, output))
            if spawn:
                existing = set(Task.objects.filter(job_id=task.job_id).values_list("key", flat=True))
                specs = spawn_validate(
                    specs=spawn, parent_key=task.key, existing_keys=existing, max_tasks=change.job.max_tasks
                )
            done = _running(task).update(
                status=TaskStatus.SUCCEEDED, output=output, finished_at=change.now, progress=1.0
            )
        if done != 1:
            return Succeeded(False)
        if specs:
            Task.objects.bulk_create(task_rows(job=change.job, specs=specs, now=change.now))
        extra = {"spawned": [s["key"] for s in specs]} if specs else {}
        change.task_status(task, TaskStatus.SUCCEEDED, attempt=task.attempt, **extra)
        change.outputs[task.key] = output
        _settle(change)
        handoff = None
        if handoff_queue and settings.AGENTBUS_EAGER_HANDOFF:
            handoff = next((m for m in change.messages if m.queue == handoff_queue), None)
            if handoff is not None:
                change.messages.remove(handoff)
        _commit(change)
        if handoff is not None or not handoff_queue:
            return Succeeded(True, handoff)
        # Last, after every write of the job: the admission's lock is held to the commit.
        return Succeeded(True, admit_with_success(handoff_queue), admitted=True)


_SUCCEED_SQL = (
    # Step 1 of the lock order, the job row, then the task's conditional UPDATE, which
    # reads the locked row (so runs after it): one round trip for both, on every
    # success. The tasks are read by a statement of their own after it (_tasks), which
    # sees what committed while this one waited for the lock.
    f"WITH j AS (SELECT {', '.join(_JOB_COLUMNS[f] for f in _JOB_FIELDS)} FROM jobs_job WHERE id = %s FOR UPDATE), "
    "u AS (UPDATE jobs_task SET status = %s, output = %s, finished_at = %s, progress = 1.0 FROM j "
    "WHERE jobs_task.id = %s AND jobs_task.job_id = j.id AND jobs_task.status = %s AND jobs_task.attempt = %s "
    "RETURNING jobs_task.id) "
    f"SELECT {', '.join('j.' + _JOB_COLUMNS[f] for f in _JOB_FIELDS)}, (SELECT COUNT(*) FROM u) AS succeeded FROM j"
)
_OUTPUT = Task._meta.get_field("output")


def _lock_and_succeed(task: Task, output) -> tuple[Change | None, int]:
    """PostgreSQL's success without a spawn or an "after" gate: the job's lock and the
    output's write in one statement; returns the change and the rows written (0: the
    attempt is no longer the running one)."""
    now = timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    params = [_job_pk(task.job_id), TaskStatus.SUCCEEDED, _OUTPUT.get_db_prep_save(output, connection), at]
    params += [_job_pk(task.pk), TaskStatus.RUNNING, task.attempt]
    job = next(iter(Job.objects.raw(_SUCCEED_SQL, params)), None)
    if job is None:  # the job is gone (deleted by an operator): nothing to write
        return None, 0
    return Change(job=job, now=now), job.__dict__.pop("succeeded")


def _output_hold(change: Change, task: Task, output) -> bool:
    held = _running(task).update(status=TaskStatus.AWAITING_REVIEW, output=output, progress=1.0, worker="")
    if held != 1:
        return False
    change.task_status(task, TaskStatus.AWAITING_REVIEW, attempt=task.attempt, review="after")
    gates.review_open(
        job_id=task.job_id,
        task=task,
        kind=ReviewKind.AFTER,
        proposed=output,
        attempt=task.attempt,
        options=gates.gate_options(change.job.plan, task.key),
        events=change.events,
    )
    _commit(change)
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
    """Record a failed attempt: schedule a retry with backoff (the orchestrator dispatches
    it when it falls due), or fail the task for good and settle the job (its dependents
    are skipped, the job ends if nothing else runs). False if the attempt is no longer the
    running one."""
    error = error[:4000]
    retry = retryable and task.attempt < task.max_attempts
    with transaction.atomic():
        change = _lock(task.job_id)
        if retry:
            spec = agent_get(task.agent)
            delay = retry_delay(task.attempt, spec.retry_backoff if spec else None)
            due = change.now + timedelta(seconds=delay)
            if _running(task).update(status=TaskStatus.PENDING, error=error, next_attempt_at=due, worker="") != 1:
                return False
            change.event(
                EventType.TASK_RETRY,
                task=task,
                status=TaskStatus.PENDING,
                attempt=task.attempt,
                error=error,
                retry_in=round(delay, 3),
            )
            _commit(change)
            orchestrator_wake(due)
            return True
        if _running(task).update(status=TaskStatus.FAILED, error=error, finished_at=change.now) != 1:
            return False
        change.task_status(task, TaskStatus.FAILED, attempt=task.attempt, error=error)
        _settle(change)
        _commit(change)
    return True


def task_defer(*, task: Task, delay: float, reason: str) -> bool:
    """Hand the attempt back without running it (the agent's circuit is open, or it runs
    its concurrency limit): the task waits ``delay`` seconds and is dispatched again with
    the same attempt number, so waiting never spends an attempt."""
    # At least a second, so the RQ job of this attempt is gone before the next one with
    # the same job id is sent.
    delay = max(1.0, delay) * random.uniform(1.0, 1.2)
    with transaction.atomic():
        change = _lock(task.job_id)
        due = change.now + timedelta(seconds=delay)
        done = _running(task).update(
            status=TaskStatus.PENDING, attempt=task.attempt - 1, next_attempt_at=due, started_at=None, worker=""
        )
        if done != 1:
            return False
        change.event(
            EventType.TASK_DEFERRED, task=task, status=TaskStatus.PENDING, reason=reason, retry_in=round(delay, 3)
        )
        _commit(change)
    orchestrator_wake(due)
    return True


def task_ask_human(*, task: Task, question: str, options: list[str] | None = None) -> bool:
    """Suspend a running attempt on a question: the task becomes ``awaiting_input``, its
    worker is free, and a question review opens. Once answered the task runs again with
    ``ctx.human["answer"]``. Raises ValueError for a malformed question; False if the
    attempt is no longer the running one."""
    question, options = gates.question_validate(question, options)
    with transaction.atomic():
        change = _lock(task.job_id)
        if _running(task).update(status=TaskStatus.AWAITING_INPUT, worker="") != 1:
            return False
        change.task_status(task, TaskStatus.AWAITING_INPUT, attempt=task.attempt, question=question)
        gates.review_open(
            job_id=task.job_id,
            task=task,
            kind=ReviewKind.QUESTION,
            proposed={"question": question, "options": options},
            attempt=task.attempt,
            options=gates.gate_options(change.job.plan, task.key),
            events=change.events,
        )
        _commit(change)
    return True


def task_usage_record(*, task: Task, prompt_tokens: int, completion_tokens: int, total_tokens: int) -> int:
    """Add an LLM call's tokens to the task and its job (whatever becomes of the attempt:
    they were spent); returns the job's new total. A job that crosses its ``max_tokens``
    ends here, failed, and the running task stops at its next heartbeat."""
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
        change = _lock(task.job_id)
        job = change.job
        job.tokens_used += int(total_tokens)
        Job.objects.filter(pk=job.id).update(tokens_used=job.tokens_used)
        Task.objects.filter(pk=task.pk).update(tokens_used=F("tokens_used") + int(total_tokens), usage=usage)
        if job.status not in JOB_TERMINAL and budget_exceeded(job, change.now):
            _settle(change)
            _commit(change)
    spec = agent_get(task.agent)
    if spec is not None:  # toward the agent's tokens-per-minute limit (agents.rate_limits)
        tokens_record(spec, int(total_tokens), member=f"{task.id}:{task.attempt}")
    return job.tokens_used


# --- what a review decision does -----------------------------------------------------------------


def review_lock(*, job_id) -> Change:
    """A review decision's transaction starts here: the job row, before the review row
    (step 1 of the lock order; jobs.reviews.decisions locks the review next)."""
    return _lock(job_id)


def gate_release(change: Change, task: Task, *, waiting: str, to: str, extra: dict | None = None, **fields) -> None:
    """Move a task off the gate it waits at (``waiting``: awaiting_review or
    awaiting_input) to ``to``: pending (it runs again, or for the first time), succeeded
    (its output accepted) or failed. 409 if it no longer waits there."""
    if to in TASK_TERMINAL:
        fields.setdefault("finished_at", change.now)
    if Task.objects.filter(pk=task.pk, status=waiting).update(status=to, **fields) != 1:
        raise Conflict("The task is no longer waiting on this review.", code="task_not_waiting")
    data = dict(extra or {})
    if fields.get("error"):
        data["error"] = fields["error"]
    change.task_status(task, to, **data)
    _forget_tasks(change)


def planner_rerun(change: Change, planner: Task, *, feedback: str, rejections: int) -> None:
    """A reviewer rejected the plan the planner made: the job plans again, and the
    planner runs with the feedback (in its ``ctx.human``)."""
    Job.objects.filter(pk=change.job.id).update(plan=None, status=JobStatus.PLANNING)
    change.job.plan, change.job.status = None, JobStatus.PLANNING
    if (
        Task.objects.filter(pk=planner.pk, status=TaskStatus.SUCCEEDED).update(
            status=TaskStatus.PENDING,
            output=None,
            error="",
            next_attempt_at=None,
            finished_at=None,
            max_attempts=F("max_attempts") + 1,
        )
        != 1
    ):
        raise Conflict("The planner is no longer waiting on this review.", code="task_not_waiting")
    change.task_status(planner, TaskStatus.PENDING, feedback=feedback, rejections=rejections)
    change.job_status(JobStatus.PLANNING, replan=rejections)
    _forget_tasks(change)


def plan_approve(change: Change, plan: dict) -> None:
    """The plan review passed: the job goes on planning with this plan (written as tasks
    when the decision's transaction settles the job)."""
    Job.objects.filter(pk=change.job.id).update(plan=plan, status=JobStatus.PLANNING)
    change.job.plan, change.job.status = plan, JobStatus.PLANNING
    change.job_status(JobStatus.PLANNING, plan_approved=True)


def job_fail(change: Change, reason: str, *, keep_review=None) -> None:
    """A review failed the job (a rejected plan, a gate's "fail" default)."""
    _end(change, JobStatus.FAILED, reason, keep_review=keep_review)


def decision_commit(change: Change) -> None:
    """A decision's transaction ends here: the job is settled (what the decision released
    is dispatched) and its events appended."""
    _settle(change)
    _commit(change)


def review_note(change: Change, events: list[NewEvent]) -> None:
    """Append review events that change no task (claimed, released, reminded), inside a
    transaction that began with ``review_lock``."""
    change.events += events
    _commit(change, seen=Seen.INFORMATIONAL)
