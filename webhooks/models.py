"""Webhooks: a user's subscriptions, a job's own ``notify``, and the delivery outbox.

Events are never sent from where they happen. The orchestrator's step reads the event
log (jobs.JobEvent) behind a cursor, writes one WebhookDelivery per matching target
(unique per target and event, so reading an event twice writes nothing), and sends due
deliveries from its sender threads (webhooks/outbox.py, webhooks/delivery.py).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class WebhookEvent(models.TextChoices):
    JOB_FINISHED = "job.finished"  # the job succeeded, failed or was cancelled
    JOB_STATUS = "job.status"  # any change of the job's status
    TASK_FAILED = "task.failed"  # a task failed for good (retries spent)
    REVIEW_OPENED = "review.opened"  # a gate waits for a human


class WebhookSubscription(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text="Names from WebhookEvent.")
    # Signs each delivery (HMAC-SHA256); shown to its owner once, when created.
    secret = models.CharField(max_length=200)
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        # GET /webhooks, and the outbox step's subscriptions of an event's owner.
        indexes = [models.Index(fields=["owner", "created_at"], name="webhook_owner_created")]

    def __str__(self) -> str:
        return f"webhook {self.url}"


class JobNotify(models.Model):
    """The ``notify`` of one job's submission: its events go to this URL."""

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="notify", primary_key=True)
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"notify {self.url} of {self.job_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its first attempt or a retry
    SUCCEEDED = "succeeded"  # a 2xx answer
    FAILED = "failed"  # every attempt spent; redeliver by hand


class WebhookDelivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    job_notify = models.ForeignKey(
        JobNotify, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    # The JobEvent it reports (by id, not a foreign key: retention may purge the event,
    # and the delivery carries its own copy in ``payload``).
    event_id = models.BigIntegerField()
    event = models.CharField(max_length=50, choices=WebhookEvent.choices)
    job_id = models.UUIDField(null=True, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Due time of the next attempt; while an attempt runs, the end of its lease.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sender: pending deliveries that are due.
            models.Index(fields=["next_attempt_at"], name="delivery_due", condition=Q(status="pending")),
            # GET /webhooks/{id}/deliveries, newest first.
            models.Index(fields=["subscription", "-created_at"], name="delivery_subscription_created"),
            # Retention purges a job's deliveries with the job.
            models.Index(fields=["job_id"], name="delivery_job"),
        ]
        constraints = [
            # Reading an event twice (the cursor re-reads its settle window) writes nothing.
            models.UniqueConstraint(
                fields=["subscription", "event_id", "event"],
                condition=Q(subscription__isnull=False),
                name="delivery_once_per_subscription",
            ),
            models.UniqueConstraint(
                fields=["job_notify", "event_id", "event"],
                condition=Q(job_notify__isnull=False),
                name="delivery_once_per_notify",
            ),
            models.CheckConstraint(
                condition=Q(subscription__isnull=False) | Q(job_notify__isnull=False), name="delivery_has_target"
            ),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.id} ({self.event}, {self.status})"

    @property
    def target(self):
        return self.subscription or self.job_notify


class EventCursor(models.Model):
    """How far the outbox step has read the event log (one row, name "webhooks")."""

    name = models.CharField(max_length=50, primary_key=True)
    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at event {self.last_event_id}"
