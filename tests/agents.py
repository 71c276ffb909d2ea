"""Agents used by the tests (loaded through AGENTBUS_AGENT_MODULES, in every process)."""

from __future__ import annotations

import time

from agents.registry import NonRetryableError, agent
from workers.context import AgentContext


@agent("flaky", max_attempts=3, timeout=30)
def flaky(ctx: AgentContext) -> dict:
    """Fails until attempt ``succeed_on`` (default: never)."""
    succeed_on = ctx.input.get("succeed_on", 10**6)
    if ctx.attempt < succeed_on:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@agent("broken", max_attempts=1, timeout=30)
def broken(ctx: AgentContext) -> dict:
    raise NonRetryableError("this input can never work")


@agent("sleepy", timeout=60)
def sleepy(ctx: AgentContext) -> dict:
    seconds = float(ctx.input.get("seconds", 1))
    steps = max(1, int(seconds * 10))
    for i in range(steps):
        time.sleep(seconds / steps)
        if i % 10 == 0:
            ctx.progress(i / steps, "sleeping")
    return {"slept": seconds}


@agent("unserved_echo", queue="unserved", timeout=30)
def unserved_echo(ctx: AgentContext) -> dict:
    """Like echo, on a queue no test worker serves, for tests that run tasks in-process."""
    return {"input": ctx.input, "upstream": ctx.upstream}


@agent("mcp_caller", timeout=30, max_attempts=1)
def mcp_caller(ctx: AgentContext) -> dict:
    """Calls a tool of a registered MCP server through ctx.mcp (tests/protocols)."""
    return {"tool": ctx.mcp(ctx.input["server"], ctx.input["tool"], ctx.input.get("arguments", {}))}


@agent("paced", queue="sched", timeout=30, max_attempts=2)
def paced(ctx: AgentContext) -> dict:
    """Takes ``seconds`` (default 0.05), on the queue only the scheduling tests serve."""
    time.sleep(float(ctx.input.get("seconds", 0.05)))
    return {"n": ctx.input.get("n"), "at": time.time()}


@agent("rated", queue="sched", timeout=30, max_attempts=1, rate_limit_rpm=3)
def rated(ctx: AgentContext) -> dict:
    """Three requests per window (a minute; the scheduling tests shorten it)."""
    return {"n": ctx.input.get("n"), "at": time.time()}
