"""The job event log: append (with gap-free per-job sequence numbers) and publish.

Every state change goes through ``events_append``. Sequence numbers come from one
``UPDATE ... RETURNING`` on the job row, inside the caller's transaction: the row lock
serialises appenders of the same job, and a rolled-back transaction rolls its numbers
back too, so the log has no gaps and no duplicates.

``events_publish`` is the one place that pushes events to live listeners (websockets);
it runs after commit, so nobody is told about a change that did not happen. Delivery
there is at-most-once; the log is the truth a client catches up from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from agentbus_site.channel_sender import group_send_nowait
from agentbus_site.metrics import events_observe
from jobs.models import JobEvent

logger = logging.getLogger(__name__)


@dataclass
class NewEvent:
    type: str
    task_id: Any = None
    status: str = ""
    data: dict = field(default_factory=dict)


def _reserve_seqs(job_id, count: int, *, informational: bool) -> tuple[int, int]:
    """Reserve ``count`` sequence numbers for a job; returns the last one and the job's
    owner id (read by the same statement, for the owner's live job list).

    Informational events (a task started, progress) need nothing from the orchestrator:
    if it had seen everything before them, the job stays marked as seen, so the
    reconciler does not re-advance every running job on every pass.
    """
    seen = (
        "CASE WHEN advanced_seq = last_seq THEN last_seq + %s ELSE advanced_seq END"
        if informational
        else "advanced_seq"
    )
    params = [count, count] if informational else [count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE jobs_job SET last_seq = last_seq + %s, advanced_seq = {seen} WHERE id = %s RETURNING last_seq, owner_id",
            [*params, job_id.hex if connection.vendor == "sqlite" else job_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"job {job_id} does not exist")
    return row[0], row[1]


def events_append(job_id, events: list[NewEvent], *, informational: bool = False) -> list[JobEvent]:
    """Append events to a job's log (2 queries, however many) and publish them on commit.

    ``informational``: the events call for no orchestrator action (see _reserve_seqs)."""
    if not events:
        return []
    with transaction.atomic(savepoint=False):
        last, owner_id = _reserve_seqs(job_id, len(events), informational=informational)
        now = timezone.now()
        rows = [
            JobEvent(
                job_id=job_id,
                seq=last - len(events) + 1 + i,
                type=e.type,
                task_id=e.task_id,
                status=e.status,
                data=e.data,
                at=now,
            )
            for i, e in enumerate(events)
        ]
        JobEvent.objects.bulk_create(rows)
        transaction.on_commit(lambda: events_publish(rows, owner_id=owner_id), robust=True)
    return rows


def event_append(job_id, type: str, *, task_id=None, status: str = "", **data) -> JobEvent:
    return events_append(job_id, [NewEvent(type=type, task_id=task_id, status=status, data=data)])[0]


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
LIST_EVENT_TYPES = ("job.status", "task.status")


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
