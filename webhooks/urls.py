"""/webhooks: subscriptions, their deliveries, redelivery."""

from __future__ import annotations

from django.urls import re_path

from webhooks.views import WebhookDeliveriesView, WebhookDetailView, WebhookListView, WebhookRedeliverView

_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
ID = rf"(?P<webhook_id>{_UUID})"

urlpatterns = [
    re_path(r"^webhooks/?$", WebhookListView.as_view(), name="webhook-list"),
    re_path(rf"^webhooks/{ID}/?$", WebhookDetailView.as_view(), name="webhook-detail"),
    re_path(rf"^webhooks/{ID}/deliveries/?$", WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
    re_path(
        rf"^webhooks/{ID}/deliveries/(?P<delivery_id>{_UUID})/redeliver/?$",
        WebhookRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
]
