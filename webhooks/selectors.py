"""Reads on webhooks, scoped to their owner (staff see all); another user's is a 404."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from webhooks.models import WebhookDelivery, WebhookSubscription


def webhooks_visible_to(user) -> QuerySet[WebhookSubscription]:
    subs = WebhookSubscription.objects.select_related("owner")
    return subs if user.is_staff else subs.filter(owner=user)


def webhook_list(*, user) -> QuerySet[WebhookSubscription]:
    return webhooks_visible_to(user).order_by("created_at")


def webhook_get(*, user, webhook_id) -> WebhookSubscription:
    sub = webhooks_visible_to(user).filter(pk=webhook_id).first()
    if sub is None:
        raise Http404("No such webhook.")
    return sub


def webhook_deliveries(*, subscription: WebhookSubscription, status: str | None = None) -> QuerySet[WebhookDelivery]:
    # Reads delivery_subscription_created.
    deliveries = WebhookDelivery.objects.filter(subscription=subscription).order_by("-created_at")
    return deliveries.filter(status=status) if status else deliveries


def webhook_delivery_get(*, subscription: WebhookSubscription, delivery_id) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.filter(subscription=subscription, pk=delivery_id).first()
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery
