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


@agent("talker", timeout=60, max_attempts=2, retry_backoff=0.1)
def talker(ctx: AgentContext) -> dict:
    """Says its ``words`` one by one (``ctx.stream``), ``pause`` seconds apart, with a
    custom ``step`` chunk half-way (``ctx.emit``); fails its first attempt after
    ``fail_after`` words when that is set. Its output is the whole text."""
    import time

    words = ctx.input.get("words", ["hello ", "world"])
    fail_after = ctx.input.get("fail_after")
    for i, word in enumerate(words):
        if ctx.attempt == 1 and fail_after is not None and i == fail_after:
            raise RuntimeError("talker lost its train of thought")
        if i == len(words) // 2:
            ctx.emit("step", {"half": i})
        ctx.stream(word)
        time.sleep(ctx.input.get("pause", 0.05))
    return {"text": "".join(words)}
