"""The job event log: append (with gap-free per-job sequence numbers) and publish.

Every state change goes through ``events_append``. Sequence numbers come from one
``UPDATE ... RETURNING`` on the job row, inside the caller's transaction: the row lock
serialises appenders of the same job, and a rolled-back transaction rolls its numbers
back too, so the log has no gaps and no duplicates. On PostgreSQL the UPDATE and the
INSERT of the events are one statement (the INSERT reads the numbers from the UPDATE's
RETURNING, so it runs after it): an append is one round trip on every transition.

Two hot statements of jobs.lifecycle append their own events in the same round trip as
their change, numbered the same way, and hand the rows to ``events_appended`` to
publish: a worker's claim (``advance_sql`` gives its ``advanced_seq``), and a new job's
insert (``events_insert_sql``: numbers from 1, the row inserted with ``last_seq`` their
count).

``events_publish`` is the one place that pushes events to live listeners (websockets);
it runs after commit, so nobody is told about a change that did not happen. Delivery
there is at-most-once; the log is the truth a client catches up from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from core.channels import group_send_nowait
from core.metrics import events_observe
from jobs.models import Job, JobEvent

logger = logging.getLogger(__name__)


class EventType(str, Enum):
    """Every type of event in a job's log (the ``type`` clients read; a contract)."""

    JOB_STATUS = "job.status"
    JOB_PLANNED = "job.planned"
    TASK_STATUS = "task.status"
    TASK_PROGRESS = "task.progress"
    TASK_RETRY = "task.retry"
    TASK_DEFERRED = "task.deferred"
    REVIEW_OPENED = "review.opened"
    REVIEW_DECIDED = "review.decided"
    REVIEW_CLAIMED = "review.claimed"
    REVIEW_RELEASED = "review.released"
    REVIEW_REMINDER = "review.reminder"

    def __str__(self) -> str:
        return self.value


class Seen(str, Enum):
    """What an append tells the reconciler about the job (``Job.advanced_seq``).

    SETTLED: the transition that wrote these events also settled the job (dispatched what
    became ready, finished it if done), so there is nothing left to do. INFORMATIONAL: the
    events call for no action (a task started, progress); the job stays as seen as it was.
    UNSEEN: someone must still look at the job; the reconciler will (the safe default).
    """

    SETTLED = "settled"
    INFORMATIONAL = "informational"
    UNSEEN = "unseen"


@dataclass
class NewEvent:
    type: EventType | str
    task_id: Any = None
    status: str = ""
    data: dict = field(default_factory=dict)


_ADVANCED = {
    Seen.SETTLED: ("last_seq + %s", 1),
    # Informational events need nothing from anyone: if everything before them had been
    # seen, the job stays marked as seen, so the reconciler does not look at every
    # running job on every pass.
    Seen.INFORMATIONAL: ("CASE WHEN advanced_seq = last_seq THEN last_seq + %s ELSE advanced_seq END", 1),
    Seen.UNSEEN: ("advanced_seq", 0),
}


def _job_set_sql(job_set: dict | None) -> tuple[str, list]:
    """``, column = %s`` for each other column of the job row an append writes along
    (jobs.lifecycle: a job's end), and its values as the database takes them."""
    fields = [Job._meta.get_field(name) for name in job_set or ()]
    sql = "".join(f", {connection.ops.quote_name(f.column)} = %s" for f in fields)
    return sql, [f.get_db_prep_save(job_set[f.name], connection) for f in fields]


def _reserve_seqs(job_id, count: int, *, seen: Seen, job_set: dict | None = None) -> tuple[int, int]:
    """Reserve ``count`` sequence numbers for a job (and mark it ``seen``); returns the last
    one and the job's owner id (read by the same statement, for the owner's live job list).
    """
    seen_sql, uses_count = _ADVANCED[seen]
    params = [count, count] if uses_count else [count]
    set_sql, set_params = _job_set_sql(job_set)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE jobs_job SET last_seq = last_seq + %s, advanced_seq = {seen_sql}{set_sql} WHERE id = %s "
            "RETURNING last_seq, owner_id",
            [*params, *set_params, job_id.hex if connection.vendor == "sqlite" else job_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"job {job_id} does not exist")
    return row[0], row[1]


def events_append(
    job_id, events: list[NewEvent], *, seen: Seen = Seen.UNSEEN, job_set: dict | None = None
) -> list[JobEvent]:
    """Append events to a job's log (one statement on PostgreSQL, two on SQLite, however
    many events) and publish them on commit.

    Called with the job row already locked (jobs.lifecycle takes it first), or as the
    first write of a transaction: the UPDATE that reserves the numbers takes that lock.
    ``job_set``: other columns of the job row to write in that same UPDATE (by field
    name), so that a transition that changes the row and logs it costs one statement."""
    if not events:
        if job_set:
            Job.objects.filter(pk=job_id).update(**job_set)
        return []
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        if connection.vendor == "postgresql":
            last, owner_id = _append_in_one_statement(job_id, events, seen=seen, now=now, job_set=job_set)
        else:
            last, owner_id = _reserve_seqs(job_id, len(events), seen=seen, job_set=job_set)
        rows = events_appended(job_id, events, last=last, owner_id=owner_id, now=now)
        if connection.vendor != "postgresql":
            JobEvent.objects.bulk_create(rows)
    return rows


def events_appended(job_id, events: list[NewEvent], *, last: int, owner_id, now) -> list[JobEvent]:
    """The rows of events a statement has just inserted, numbered up to ``last``, published
    on commit (at once outside a transaction). For a statement that appends its own
    events in the same round trip as its change (jobs.lifecycle's claim and a new job's
    insert), numbered as here: from the job row's ``last_seq``, with ``advance_sql`` for
    its ``advanced_seq``."""
    rows = [
        JobEvent(
            job_id=job_id,
            seq=last - len(events) + 1 + i,
            type=str(e.type),
            task_id=e.task_id,
            status=e.status,
            data=e.data,
            at=now,
        )
        for i, e in enumerate(events)
    ]
    transaction.on_commit(lambda: events_publish(rows, owner_id=owner_id), robust=True)
    return rows


def advance_sql(seen: Seen, count: int) -> str:
    """The SQL of the job row's new ``advanced_seq`` when ``count`` events are appended
    (the row's columns unqualified, before the update)."""
    seen_sql, uses_count = _ADVANCED[seen]
    return seen_sql.replace("%s", str(int(count))) if uses_count else seen_sql


def events_insert_sql(job_id, events: list[NewEvent], *, now) -> tuple[str, list]:
    """An INSERT of a new job's first events, numbered from 1 (its row is inserted with
    ``last_seq`` = their count, in the same statement: jobs.lifecycle.job_create)."""
    sql = (
        "INSERT INTO jobs_jobevent (job_id, seq, type, task_id, status, data, at) "
        "SELECT %s, e.n, e.type, e.task_id, e.status, e.data::jsonb, %s FROM "
        "unnest(%s::text[], %s::uuid[], %s::text[], %s::text[]) WITH ORDINALITY AS e(type, task_id, status, data, n)"
    )
    return sql, [job_id, now, *_columns(events)]


def _columns(events: list[NewEvent]) -> list[list]:
    return [
        [str(e.type) for e in events],
        [str(e.task_id) if e.task_id is not None else None for e in events],
        [e.status for e in events],
        [json.dumps(e.data) for e in events],
    ]


def _append_in_one_statement(
    job_id, events: list[NewEvent], *, seen: Seen, now, job_set: dict | None = None
) -> tuple[int, int]:
    """Reserve the numbers and insert the events in one statement; returns the last number
    and the job's owner id, as _reserve_seqs does."""
    seen_sql, uses_count = _ADVANCED[seen]
    set_sql, set_params = _job_set_sql(job_set)
    count = len(events)
    params: list = [count, *([count] if uses_count else []), *set_params, job_id, count, now, *_columns(events)]
    sql = (
        f"WITH j AS (UPDATE jobs_job SET last_seq = last_seq + %s, advanced_seq = {seen_sql}{set_sql} WHERE id = %s "
        "RETURNING id, last_seq, owner_id), "
        "e AS (INSERT INTO jobs_jobevent (job_id, seq, type, task_id, status, data, at) "
        "SELECT j.id, j.last_seq - %s + e.n, e.type, e.task_id, e.status, e.data::jsonb, %s FROM j, "
        "unnest(%s::text[], %s::uuid[], %s::text[], %s::text[]) WITH ORDINALITY AS e(type, task_id, status, data, n)) "
        "SELECT last_seq, owner_id FROM j"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"job {job_id} does not exist")
    return row[0], row[1]


def job_group(job_id) -> str:
    """The Channels group that websocket clients of one job join."""
    return f"job-{job_id}"


def user_jobs_group(owner_id) -> str:
    """The Channels group of one user's live job list (``/ws/jobs``)."""
    return f"jobs-user-{owner_id}"


# Staff watch every job's list changes (they see all jobs over REST too).
STAFF_JOBS_GROUP = "jobs-staff"

# The events that change a row of a job list: the job's status, and its tasks' statuses
# (from which a list shows progress). Progress ticks and logs stay on the job's socket.
LIST_EVENT_TYPES = (EventType.JOB_STATUS.value, EventType.TASK_STATUS.value)


def events_publish(rows: list[JobEvent], *, owner_id=None) -> None:
    """Push committed events to live listeners. Never raises: the log already has them.

    Every event goes to the job's group; status changes also go to the owner's job-list
    group and the staff one. Delivery is at-most-once: a client notices a gap in ``seq``
    (or a periodic check does) and reads the missing events from the log.
    """
    if not rows:
        return
    messages = [row.as_message() for row in rows]
    events_observe(messages)
    sends = [(job_group(rows[0].job_id), {"type": "job.events", "events": messages})]
    listed = [m for m in messages if m["type"] in LIST_EVENT_TYPES]
    if listed and owner_id is not None:
        change = {"type": "jobs.changed", "events": listed}
        sends += [(user_jobs_group(owner_id), change), (STAFF_JOBS_GROUP, change)]
    # Queued on this process's one sender loop and sent in order; the committing
    # request, worker or orchestrator does not wait for Redis (see channel_sender).
    for group, message in sends:
        try:
            group_send_nowait(group, message)
        except Exception:
            logger.exception("publishing %d events failed; clients will catch up from the log", len(rows))
            return
