"""Agents registered by staff at run time (Django admin or ``POST /agents``).

Python agents live in code and are registered by decorator; HTTP and LLM agents are
configuration (a URL, a model), so operators add them without a deploy. Every process
reads these rows through agents.registry, which caches them and re-reads when the
version key in Redis changes (see ``agents_changed``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from agents.kinds import CONFIGURABLE_KINDS, AgentKind

agent_name_validator = RegexValidator(r"^[A-Za-z0-9_.-]{1,100}$", "1-100 characters of A-Z a-z 0-9 _ . -")


class AgentDefinition(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[agent_name_validator])
    kind = models.CharField(max_length=10, choices=[(k.value, k.label) for k in CONFIGURABLE_KINDS])
    description = models.CharField(max_length=500, blank=True)
    queue = models.CharField(max_length=100, default="default")
    timeout = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1)], help_text="Seconds per attempt."
    )
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    retry_backoff = models.FloatField(
        null=True, blank=True, help_text="Base seconds of exponential backoff; empty uses the server default."
    )
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many tasks of this agent run at once; empty is unlimited."
    )
    rate_limit_rpm = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests (dispatched attempts) per minute, over all workers; empty is unlimited.",
    )
    rate_limit_tpm = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="LLM tokens per minute (as the provider reported them), over all workers; empty is unlimited.",
    )
    breaker_fail_max = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1)], help_text="Consecutive failures that open the circuit."
    )
    breaker_reset_timeout = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Seconds an open circuit waits before a trial call."
    )
    # HTTP agents. The URL is chosen by staff only: user input never decides where a
    # worker connects.
    url = models.URLField(max_length=500, blank=True)
    secret = models.CharField(max_length=200, blank=True, help_text="HMAC key for the request signature.")
    # MCP servers and A2A agents: the URL is the server's endpoint (MCP) or its agent
    # card (A2A); the header authenticates the worker to it.
    auth_header = models.CharField(
        max_length=1000, blank=True, help_text='Sent with every call, e.g. "Authorization: Bearer <token>".'
    )
    allowed_tools = models.JSONField(default=list, blank=True, help_text="MCP: the tools tasks may call.")
    reply_secret = models.CharField(
        max_length=200, blank=True, help_text="If set, the agent must sign its replies with it (signature v2)."
    )
    # LLM agents; empty values fall back to AGENTBUS_LLM_*.
    model = models.CharField(max_length=200, blank=True)
    base_url = models.URLField(max_length=500, blank=True)
    api_key = models.CharField(max_length=500, blank=True)
    system_prompt = models.TextField(blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Completion tokens per call.")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The table the first version created under the workers app; the model moved to
        # agents/ without a data migration (see agents/migrations/0001).
        db_table = "workers_agentdefinition"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in CONFIGURABLE_KINDS]), name="agentdef_kind_valid"
            ),
            models.CheckConstraint(condition=~Q(kind=AgentKind.HTTP) | ~Q(url=""), name="agentdef_http_has_url"),
            # A limit of 0 would hold the agent's tasks forever: empty means unlimited.
            models.CheckConstraint(
                condition=Q(rate_limit_rpm__isnull=True) | Q(rate_limit_rpm__gte=1),
                name="agentdef_rate_limit_rpm_positive",
            ),
            models.CheckConstraint(
                condition=Q(rate_limit_tpm__isnull=True) | Q(rate_limit_tpm__gte=1),
                name="agentdef_rate_limit_tpm_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
