"""Built-in agents."""

from __future__ import annotations

from workers.context import AgentContext
from workers.registry import agent


@agent("echo", description="Returns its input and its upstream outputs; for demos and tests.", timeout=60)
def echo(ctx: AgentContext) -> dict:
    return {"input": ctx.input, "upstream": ctx.upstream}
