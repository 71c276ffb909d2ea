"""The agents API: GET /agents lists every registered agent for everyone (kind, queue,
health, circuit, rate limits); POST /agents registers an HTTP or LLM agent, staff only."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.selectors import agents_with_health
from agents.serializers import AgentConfigSerializer
from agents.services import agent_definition_create
from core.openapi import BAD_REQUEST, UNAUTHENTICATED, error


class IsStaffOrReadOnly(permissions.BasePermission):
    message = "Only staff can register agents."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_staff)


class RateLimitOutputSerializer(serializers.Serializer):
    """An agent's rate limits and its sliding window now (agents.rate_limits)."""

    rpm = serializers.IntegerField(allow_null=True, help_text="Requests per minute; null: no request limit.")
    tpm = serializers.IntegerField(allow_null=True, help_text="LLM tokens per minute; null: no token limit.")
    requests_last_minute = serializers.IntegerField(
        allow_null=True, help_text="Attempts dispatched in the window; null when Redis cannot be read."
    )
    tokens_last_minute = serializers.IntegerField(
        allow_null=True,
        help_text="Tokens the agent's LLM calls reported in the window; null when Redis cannot be read.",
    )
    wait_seconds = serializers.FloatField(
        allow_null=True, help_text="Until the window admits one more request; 0: it would be dispatched now."
    )


class AgentOutputSerializer(serializers.Serializer):
    """An agent as everyone sees it; secrets and API keys are never shown."""

    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["python", "http", "llm", "planner", "mcp", "a2a"])
    queue = serializers.CharField()
    timeout = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    retry_backoff = serializers.FloatField(allow_null=True)
    concurrency = serializers.IntegerField(allow_null=True)
    rate_limit_rpm = serializers.IntegerField(allow_null=True, help_text="Declared requests per minute.")
    rate_limit_tpm = serializers.IntegerField(allow_null=True, help_text="Declared LLM tokens per minute.")
    description = serializers.CharField()
    source = serializers.ChoiceField(choices=["code", "settings", "database"])
    url = serializers.URLField(required=False, help_text="HTTP agents, MCP servers, A2A agents' cards.")
    allowed_tools = serializers.ListField(child=serializers.CharField(), required=False, help_text="MCP servers.")
    model = serializers.CharField(required=False, help_text="LLM agents and the planner only.")
    health = serializers.DictField(help_text='{"status": ok|degraded|down|no_workers|unknown, "workers", "running"}')
    circuit = serializers.DictField(help_text='{"state": closed|open|half-open, "failures", "retry_in", ...}')
    rate_limit = RateLimitOutputSerializer(allow_null=True, help_text="null when the agent has no rate limits.")


class AgentListOutputSerializer(serializers.Serializer):
    agents = AgentOutputSerializer(many=True)


EXAMPLE_AGENT = {
    "name": "summarise",
    "kind": "http",
    "queue": "default",
    "timeout": 120,
    "max_attempts": 3,
    "retry_backoff": 2.0,
    "concurrency": 4,
    "rate_limit_rpm": 60,
    "rate_limit_tpm": None,
    "description": "Summarises a document.",
    "source": "database",
    "url": "https://agents.internal/summarise",
    "health": {"status": "ok", "workers": 2, "running": 1},
    "circuit": {"state": "closed", "failures": 0},
    "rate_limit": {"rpm": 60, "tpm": None, "requests_last_minute": 12, "tokens_last_minute": 0, "wait_seconds": 0.0},
}


class AgentListView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaffOrReadOnly]

    @extend_schema(
        operation_id="agents_list",
        summary="The registered agents, with health, circuit and rate-limit state",
        responses={200: AgentListOutputSerializer, 401: UNAUTHENTICATED},
        examples=[OpenApiExample("One HTTP agent", value={"agents": [EXAMPLE_AGENT]}, response_only=True)],
    )
    def get(self, request):
        return Response({"agents": agents_with_health()})

    @extend_schema(
        operation_id="agents_register",
        summary="Register an HTTP or LLM agent (staff only)",
        request=AgentConfigSerializer,
        responses={
            201: AgentOutputSerializer,
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
            403: error("Only staff can register agents."),
            409: error("An agent with this name is already registered."),
        },
        examples=[
            OpenApiExample(
                "An HTTP agent",
                value={"name": "summarise", "kind": "http", "url": "https://agents.internal/summarise", "timeout": 120},
                request_only=True,
            ),
            OpenApiExample("Registered", value=EXAMPLE_AGENT, response_only=True, status_codes=["201"]),
        ],
    )
    def post(self, request):
        data = AgentConfigSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        definition = agent_definition_create(data=dict(data.validated_data), created_by=request.user)
        body = next(a for a in agents_with_health() if a["name"] == definition.name)
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": "/agents"})
