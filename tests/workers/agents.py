"""Agents used by tests/workers (loaded through AGENTBUS_AGENT_MODULES, in every process)."""

from __future__ import annotations

from agents.registry import agent
from workers.context import AgentContext


@agent("artist", timeout=30, max_attempts=1)
def artist(ctx: AgentContext) -> dict:
    """Writes the artifacts its input names: {"files": {name: text}}."""
    for name, text in ctx.input.get("files", {}).items():
        ctx.artifact(name, text, "text/plain")
    ctx.artifact("raw.bin", bytes(range(256)))
    return {"written": sorted(ctx.input.get("files", {})) + ["raw.bin"]}


@agent("spawner", timeout=30, max_attempts=1)
def spawner(ctx: AgentContext) -> dict:
    """Adds ``count`` echo tasks to its job, each told its number."""
    for i in range(ctx.input.get("count", 2)):
        ctx.spawn({"key": f"child-{i}", "agent": "echo", "input": {"n": i}})
    return {"spawned": ctx.input.get("count", 2)}


@agent("solo", timeout=30, max_attempts=1, concurrency=1)
def solo(ctx: AgentContext) -> dict:
    """Holds the agent's only concurrency slot for ``seconds``."""
    import time

    began = time.time()
    time.sleep(ctx.input.get("seconds", 0.6))
    return {"began": began, "ended": time.time()}
