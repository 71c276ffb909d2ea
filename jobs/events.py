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

from jobs.models import JobEvent

logger = logging.getLogger(__name__)


@dataclass
class NewEvent:
    type: str
    task_id: Any = None
    status: str = ""
    data: dict = field(default_factory=dict)


def _reserve_seqs(job_id, count: int) -> int:
    """Reserve ``count`` sequence numbers for a job; returns the last one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE jobs_job SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq",
            [count, job_id.hex if connection.vendor == "sqlite" else job_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"job {job_id} does not exist")
    return row[0]


def events_append(job_id, events: list[NewEvent]) -> list[JobEvent]:
    """Append events to a job's log (2 queries, however many) and publish them on commit."""
    if not events:
        return []
    with transaction.atomic(savepoint=False):
        last = _reserve_seqs(job_id, len(events))
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
        transaction.on_commit(lambda: events_publish(rows), robust=True)
    return rows


def event_append(job_id, type: str, *, task_id=None, status: str = "", **data) -> JobEvent:
    return events_append(job_id, [NewEvent(type=type, task_id=task_id, status=status, data=data)])[0]


def job_group(job_id) -> str:
    """The Channels group that websocket clients of one job join."""
    return f"job-{job_id}"


def events_publish(rows: list[JobEvent]) -> None:
    """Push committed events to live listeners. Never raises: the log already has them."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None or not rows:
        return
    try:
        async_to_sync(layer.group_send)(
            job_group(rows[0].job_id),
            {"type": "job.events", "events": [row.as_message() for row in rows]},
        )
    except Exception:
        logger.exception("publishing %d events failed; clients will catch up from the log", len(rows))
