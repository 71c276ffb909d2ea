"""Writes on webhooks: subscriptions, a job's notify, and redelivery by hand."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from webhooks.models import DeliveryStatus, JobNotify, WebhookDelivery, WebhookSubscription


def webhook_create(
    *, owner, url: str, events: list[str], secret: str = "", description: str = ""
) -> WebhookSubscription:
    """A subscription; without a secret one is made (and shown once, in the answer)."""
    return WebhookSubscription.objects.create(
        owner=owner, url=url, events=events, secret=secret or secrets.token_urlsafe(32), description=description
    )


def webhook_update(*, subscription: WebhookSubscription, changes: dict) -> WebhookSubscription:
    for name, value in changes.items():
        setattr(subscription, name, value)
    subscription.save()
    return subscription


def webhook_delete(*, subscription: WebhookSubscription) -> None:
    """Delete the subscription and its delivery log."""
    subscription.delete()


def job_notify_create(*, job, notify: dict) -> JobNotify:
    """Called by job_submit, in its transaction, for a job submitted with ``notify``."""
    return JobNotify.objects.create(
        job=job,
        url=notify["url"],
        events=list(notify.get("events") or ["job.finished"]),
        secret=notify.get("secret", ""),
    )


def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again, by hand: it goes back to pending with a fresh attempt
    budget, due now (the orchestrator's sender picks it up within a pass)."""
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        locked.status = DeliveryStatus.PENDING
        locked.attempts = 0
        locked.next_attempt_at = timezone.now()
        locked.save(update_fields=["status", "attempts", "next_attempt_at"])
    return locked
