"""Webhook subscriptions and their delivery log in the admin; redeliver as an action."""

from __future__ import annotations

from django.contrib import admin, messages

from webhooks.models import JobNotify, WebhookDelivery, WebhookSubscription
from webhooks.services import webhook_delivery_redeliver


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("url", "owner", "events", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("url", "owner__username")
    exclude = ("secret",)


@admin.register(JobNotify)
class JobNotifyAdmin(admin.ModelAdmin):
    list_display = ("job", "url", "events", "created_at")
    exclude = ("secret",)
    raw_id_fields = ("job",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "owner", "status", "attempts", "last_status_code", "next_attempt_at", "created_at")
    list_filter = ("status", "event")
    search_fields = ("id", "job_id")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["redeliver"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Redeliver the selected deliveries")
    def redeliver(self, request, queryset) -> None:
        for delivery in queryset:
            webhook_delivery_redeliver(delivery=delivery)
        self.message_user(request, f"{queryset.count()} delivery(ies) queued again.", messages.SUCCESS)
