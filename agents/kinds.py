"""The kinds of agent (a contract: ``GET /agents`` and the admin show them)."""

from __future__ import annotations

from django.db import models


class AgentKind(models.TextChoices):
    PYTHON = "python"  # a function in code, registered with @agent
    HTTP = "http"  # an operator-configured URL, HMAC-signed calls
    LLM = "llm"  # any OpenAI-compatible chat endpoint
    PLANNER = "planner"  # the master agent: plans a job from its requirements
    MCP = "mcp"  # a registered MCP server; a task calls one of its allowed tools (agents.mcp)
    A2A = "a2a"  # a remote A2A agent, by its card URL; a task delegates to it (agents.a2a)


# Kinds an operator can define without code; Python agents and the planner are code.
CONFIGURABLE_KINDS = (AgentKind.HTTP, AgentKind.LLM, AgentKind.MCP, AgentKind.A2A)

# Kinds whose work is a function in this process (no remote endpoint, so no circuit).
IN_PROCESS_KINDS = (AgentKind.PYTHON, AgentKind.PLANNER)
