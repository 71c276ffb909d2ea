"""From the event log to the delivery outbox, and from the outbox to the receivers.

Nothing here runs in a request or on a task's path: ``events_append`` stays as it was
(no query, no HTTP added), and the orchestrator's step (``webhooks_step``) does both
halves. Why the orchestrator and not an RQ queue: queue messages are signed and name one
entry point (workers/queue.py); a second entry point would widen what a worker trusts,
while the orchestrator already has a clock, a leader, and a loop of small steps. Its
HTTP calls run on a few sender threads, so a slow receiver never holds up the loop (or
the leader lock's renewal).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from jobs.models import JOB_TERMINAL, JobEvent
from webhooks.http import signed_post
from webhooks.models import DeliveryStatus, EventCursor, JobNotify, WebhookDelivery, WebhookEvent, WebhookSubscription

logger = logging.getLogger(__name__)

CURSOR = "webhooks"
# The event-log types that can become a webhook event.
SOURCE_TYPES = ("job.status", "task.status", "review.opened")


def webhook_events_of(event_type: str, status: str) -> list[str]:
    """The webhook events one event-log row stands for."""
    if event_type == "job.status":
        return (
            [WebhookEvent.JOB_STATUS, WebhookEvent.JOB_FINISHED]
            if status in JOB_TERMINAL
            else [WebhookEvent.JOB_STATUS]
        )
    if event_type == "task.status" and status == "failed":
        return [WebhookEvent.TASK_FAILED]
    if event_type == "review.opened":
        return [WebhookEvent.REVIEW_OPENED]
    return []


def webhook_deliveries_collect(*, now: datetime | None = None, batch: int = 500) -> int:
    """Write a delivery for every new matching event and target; returns how many rows
    it read.

    1. Read events after the cursor, of the source types, whose job's owner has an
       active subscription or whose job has a ``notify`` (nothing is read when there is
       neither: the step costs two small queries).
    2. For each event, each webhook event it stands for, and each target that asked for
       it, insert a delivery; the unique constraints make a second read a no-op.
    3. Move the cursor to the newest event older than AGENTBUS_WEBHOOK_SETTLE seconds.
       Event ids are taken at insert and committed later; an event committed after a
       newer one was read would be skipped by a cursor at the newest id, so the cursor
       stays behind by the settle time and those events are read again (step 2).
    """
    now = now or timezone.now()
    cursor, _ = EventCursor.objects.get_or_create(name=CURSOR)
    owners = set(WebhookSubscription.objects.filter(active=True).values_list("owner_id", flat=True))
    read = 0
    if owners or JobNotify.objects.exists():
        subscriptions: dict[int, list[WebhookSubscription]] = {}
        for sub in WebhookSubscription.objects.filter(active=True):
            subscriptions.setdefault(sub.owner_id, []).append(sub)
        scan = cursor.last_event_id
        while True:
            rows = list(
                JobEvent.objects.filter(id__gt=scan, type__in=SOURCE_TYPES)
                .filter(Q(job__owner_id__in=owners) | Q(job__notify__isnull=False))
                .annotate(owner_id=F("job__owner_id"))
                .only("id", "seq", "type", "status", "task_id", "data", "at", "job_id")
                .order_by("id")[:batch]
            )
            read += len(rows)
            notifies = {n.job_id: n for n in JobNotify.objects.filter(job_id__in={r.job_id for r in rows})}
            deliveries = [d for row in rows for d in _deliveries_for(row, subscriptions, notifies, now)]
            WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
            if len(rows) < batch:
                break
            scan = rows[-1].id
    settled = JobEvent.objects.filter(
        id__gt=cursor.last_event_id, at__lt=now - timedelta(seconds=settings.AGENTBUS_WEBHOOK_SETTLE)
    ).aggregate(m=Max("id"))["m"]
    if settled:
        EventCursor.objects.filter(name=CURSOR, last_event_id__lt=settled).update(last_event_id=settled)
    return read


def _deliveries_for(row: JobEvent, subscriptions: dict, notifies: dict, now: datetime) -> list[WebhookDelivery]:
    out = []
    notify = notifies.get(row.job_id)
    for event in webhook_events_of(row.type, row.status):
        payload = {"event": str(event), **row.as_message()}
        for sub in subscriptions.get(row.owner_id, ()):
            if event in sub.events:
                out.append(_delivery(row, event, payload, now, owner_id=row.owner_id, subscription=sub))
        if notify is not None and event in notify.events:
            out.append(_delivery(row, event, payload, now, owner_id=row.owner_id, job_notify=notify))
    return out


def _delivery(row: JobEvent, event: str, payload: dict, now: datetime, **target) -> WebhookDelivery:
    return WebhookDelivery(
        event_id=row.id, event=event, job_id=row.job_id, payload=payload, next_attempt_at=now, **target
    )


def webhook_deliveries_claim(*, limit: int, now: datetime | None = None) -> list[tuple]:
    """Claim up to ``limit`` due deliveries: each gets its attempt number and a lease
    (next_attempt_at moves past the attempt's timeout), so a second sender, or this one
    after a crash, takes it only once the lease has run out. Returns (id, attempt) pairs."""
    now = now or timezone.now()
    lease = now + timedelta(seconds=settings.AGENTBUS_WEBHOOK_TIMEOUT + 30)
    with transaction.atomic():
        # Reads the partial index delivery_due.
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(id__in=ids).update(next_attempt_at=lease, attempts=F("attempts") + 1)
        return list(WebhookDelivery.objects.filter(id__in=ids).values_list("id", "attempts"))


def webhook_delivery_attempt(*, delivery_id, attempt: int) -> bool:
    """Send one claimed delivery and record the outcome (only if ``attempt`` is still
    its current one); a failure is retried with exponential backoff and jitter until
    AGENTBUS_WEBHOOK_MAX_ATTEMPTS, then the delivery is failed (redeliver by hand)."""
    delivery = WebhookDelivery.objects.select_related("subscription", "job_notify").filter(pk=delivery_id).first()
    if delivery is None or delivery.target is None:
        return False
    target = delivery.target
    body = json.dumps(
        {"delivery": str(delivery.id), **delivery.payload}, separators=(",", ":"), sort_keys=True
    ).encode()
    result = signed_post(
        url=target.url,
        secret=target.secret,
        delivery_id=str(delivery.id),
        event=delivery.event,
        body=body,
        timestamp=str(int(time.time())),
    )
    now = timezone.now()
    current = WebhookDelivery.objects.filter(pk=delivery.id, attempts=attempt, status=DeliveryStatus.PENDING)
    if result.ok:
        current.update(
            status=DeliveryStatus.SUCCEEDED, delivered_at=now, next_attempt_at=None,
            last_status_code=result.status_code, last_error="",
        )  # fmt: skip
        return True
    final = attempt >= settings.AGENTBUS_WEBHOOK_MAX_ATTEMPTS or result.error.startswith("refused:")
    backoff = min(settings.AGENTBUS_WEBHOOK_BACKOFF_BASE * 2 ** (attempt - 1), settings.AGENTBUS_WEBHOOK_BACKOFF_MAX)
    current.update(
        status=DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
        next_attempt_at=None if final else now + timedelta(seconds=backoff * random.uniform(0.5, 1.0)),
        last_status_code=result.status_code,
        last_error=result.error,
    )
    return False


def webhook_deliveries_send_due(*, limit: int = 100) -> int:
    """Claim and send due deliveries one after the other (the management command, tests)."""
    claimed = webhook_deliveries_claim(limit=limit)
    for delivery_id, attempt in claimed:
        webhook_delivery_attempt(delivery_id=delivery_id, attempt=attempt)
    return len(claimed)


class _Sender:
    """The orchestrator's sender threads, and how many deliveries they hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.pool: ThreadPoolExecutor | None = None

    def submit(self, delivery_id, attempt: int) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(settings.AGENTBUS_WEBHOOK_CONCURRENCY, thread_name_prefix="webhook")
        with self.lock:
            self.in_flight += 1
        self.pool.submit(self._run, delivery_id, attempt)

    def _run(self, delivery_id, attempt: int) -> None:
        try:
            close_old_connections()
            webhook_delivery_attempt(delivery_id=delivery_id, attempt=attempt)
        except Exception:
            logger.exception("webhook delivery %s failed to run; retried when its lease ends", delivery_id)
        finally:
            connections.close_all()  # this thread's connection goes back to the pool
            with self.lock:
                self.in_flight -= 1


_sender = _Sender()


def webhooks_step() -> int:
    """The orchestrator's step: collect new events into the outbox, then hand as many due
    deliveries to the sender threads as they have room for. Returns the work found."""
    read = webhook_deliveries_collect()
    free = settings.AGENTBUS_WEBHOOK_CONCURRENCY * 2 - _sender.in_flight
    claimed = webhook_deliveries_claim(limit=free) if free > 0 else []
    for delivery_id, attempt in claimed:
        _sender.submit(delivery_id, attempt)
    return len(claimed) + (1 if read else 0)
