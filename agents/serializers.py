"""Validation of an HTTP or LLM agent's configuration, wherever it comes from: the
settings file (AGENTBUS_AGENTS_FILE) or a staff request (POST /agents)."""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework import serializers

from agents.kinds import CONFIGURABLE_KINDS, AgentKind
from core.fields import StrictCharField, StrictIntegerField

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class AgentConfigSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    kind = serializers.ChoiceField(choices=[k.value for k in CONFIGURABLE_KINDS])
    description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")
    queue = StrictCharField(max_length=100, required=False, default="default")
    timeout = StrictIntegerField(min_value=1, required=False, default=60)
    max_attempts = StrictIntegerField(min_value=1, required=False, default=3)
    retry_backoff = StrictFloatField(min_value=0, max_value=3600, required=False, allow_null=True, default=None)
    concurrency = StrictIntegerField(min_value=1, max_value=100_000, required=False, allow_null=True, default=None)
    rate_limit_rpm = StrictIntegerField(
        min_value=1, max_value=10_000_000, required=False, allow_null=True, default=None
    )
    rate_limit_tpm = StrictIntegerField(
        min_value=1, max_value=1_000_000_000, required=False, allow_null=True, default=None
    )
    breaker_fail_max = StrictIntegerField(min_value=1, max_value=1000, required=False, default=5)
    breaker_reset_timeout = StrictIntegerField(min_value=1, max_value=24 * 3600, required=False, default=30)
    url = serializers.URLField(max_length=500, required=False, allow_blank=True, default="")
    secret = StrictCharField(max_length=200, required=False, allow_blank=True, default="", write_only=True)
    reply_secret = StrictCharField(max_length=200, required=False, allow_blank=True, default="", write_only=True)
    model = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    base_url = serializers.URLField(max_length=500, required=False, allow_blank=True, default="")
    api_key = StrictCharField(max_length=500, required=False, allow_blank=True, default="", write_only=True)
    system_prompt = StrictCharField(max_length=20_000, required=False, allow_blank=True, default="")
    max_tokens = StrictIntegerField(min_value=1, max_value=1_000_000, required=False, allow_null=True, default=None)
    auth_header = StrictCharField(max_length=1000, required=False, allow_blank=True, default="", write_only=True)
    allowed_tools = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, default=list, max_length=500
    )

    def validate_name(self, value: str) -> str:
        if not NAME_RE.match(value):
            raise serializers.ValidationError("must be 1-100 characters of A-Z a-z 0-9 _ . -")
        return value

    def validate_queue(self, value: str) -> str:
        if not NAME_RE.match(value):
            raise serializers.ValidationError("must be 1-100 characters of A-Z a-z 0-9 _ . -")
        return value

    def validate_timeout(self, value: int) -> int:
        if value > settings.AGENTBUS_MAX_TASK_TIMEOUT:
            raise serializers.ValidationError(f"must be at most {settings.AGENTBUS_MAX_TASK_TIMEOUT} seconds")
        return value

    def validate_max_attempts(self, value: int) -> int:
        if value > settings.AGENTBUS_MAX_TASK_ATTEMPTS:
            raise serializers.ValidationError(f"must be at most {settings.AGENTBUS_MAX_TASK_ATTEMPTS}")
        return value

    def validate(self, data: dict) -> dict:
        if data["kind"] == AgentKind.HTTP:
            if not data.get("url"):
                raise serializers.ValidationError({"url": ["required for an http agent"]})
            if not data.get("secret"):
                raise serializers.ValidationError({"secret": ["required for an http agent (it signs each request)"]})
        from agents.protocols import protocol_agent_config_errors

        errors = protocol_agent_config_errors(data)
        if errors:
            raise serializers.ValidationError(errors)
        if data["kind"] == AgentKind.LLM and not (data.get("base_url") or settings.AGENTBUS_LLM_BASE_URL):
            raise serializers.ValidationError(
                {"base_url": ["required for an llm agent when AGENTBUS_LLM_BASE_URL is not set"]}
            )
        return data
