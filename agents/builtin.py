"""Built-in agents."""

from __future__ import annotations

from agents.registry import agent


@agent("echo", description="Returns its input and its upstream outputs; for demos and tests.", timeout=60)
def echo(ctx) -> dict:
    return {"input": ctx.input, "upstream": ctx.upstream}


@agent(
    "sleep",
    description="Waits input.seconds (at most 60), like an agent waiting on an API; for demos and benchmarks.",
    timeout=90,
)
def sleep(ctx) -> dict:
    import time

    seconds = min(max(float(ctx.input.get("seconds", 1.0)), 0.0), 60.0)
    time.sleep(seconds)
    return {"slept": seconds, "upstream": sorted(ctx.upstream)}
