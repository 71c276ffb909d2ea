from django.contrib import admin
from django.db import transaction

from agents.models import AgentDefinition
from agents.registry import agents_changed


@admin.register(AgentDefinition)
class AgentDefinitionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "queue", "timeout", "max_attempts", "concurrency", "enabled", "updated_at")
    list_filter = ("kind", "enabled", "queue")
    search_fields = ("name", "description", "url", "model")
    readonly_fields = ("created_by", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "kind", "description", "enabled")}),
        ("Routing and policy", {"fields": ("queue", "timeout", "max_attempts", "retry_backoff", "concurrency")}),
        ("Rate limits", {"fields": ("rate_limit_rpm", "rate_limit_tpm")}),
        ("Circuit breaker", {"fields": ("breaker_fail_max", "breaker_reset_timeout")}),
        ("HTTP agent", {"fields": ("url", "secret", "reply_secret")}),
        ("MCP server / A2A agent", {"fields": ("auth_header", "allowed_tools")}),
        ("LLM agent", {"fields": ("model", "base_url", "api_key", "system_prompt", "max_tokens")}),
        ("History", {"fields": ("created_by", "created_at", "updated_at")}),
    )

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        # Every process (web, orchestrator, workers) re-reads the agents after commit.
        transaction.on_commit(agents_changed)

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        transaction.on_commit(agents_changed)

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        transaction.on_commit(agents_changed)
