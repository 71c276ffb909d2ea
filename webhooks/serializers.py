"""Input shapes shared by the webhooks API and POST /jobs' ``notify``."""

from __future__ import annotations

from rest_framework import serializers

from core.fields import StrictCharField
from webhooks.http import UnsafeURL, url_check
from webhooks.models import WebhookEvent


class WebhookURLField(StrictCharField):
    """An http(s) URL that passes the SSRF check (webhooks.http) when it is given."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", 2000)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            url_check(value)
        except UnsafeURL as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class EventsField(serializers.ListField):
    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("child", serializers.ChoiceField(choices=WebhookEvent.values))
        kwargs.setdefault("allow_empty", False)
        kwargs.setdefault("max_length", len(WebhookEvent.values))
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return list(dict.fromkeys(super().to_internal_value(data)))


class NotifyInputSerializer(serializers.Serializer):
    """``"notify": {"url", "events"?, "secret"?}`` in POST /jobs: this job's events to one URL."""

    url = WebhookURLField()
    events = EventsField(required=False, default=[WebhookEvent.JOB_FINISHED])
    secret = StrictCharField(required=False, allow_blank=True, max_length=200, default="")
