"""Running an agent by its kind: one runner per kind, like one processor per queue."""

from __future__ import annotations

from collections.abc import Callable

from agents.a2a import a2a_agent_run
from agents.http import http_agent_run
from agents.kinds import AgentKind
from agents.llm import llm_agent_run
from agents.mcp import mcp_agent_run
from agents.registry import AgentSpec

# Kinds with a runner of their own; a Python agent (and the planner) is its own handler.
RUNNERS: dict[str, Callable] = {
    AgentKind.HTTP: http_agent_run,
    AgentKind.LLM: llm_agent_run,
    AgentKind.MCP: mcp_agent_run,
    AgentKind.A2A: a2a_agent_run,
}


def agent_run(spec: AgentSpec, ctx):
    """Call the agent with its context; returns its output."""
    runner = RUNNERS.get(spec.kind)
    return runner(spec, ctx) if runner is not None else spec.handler(ctx)
