"""Agents used by the human-in-the-loop tests (loaded through AGENTBUS_AGENT_MODULES)."""

from __future__ import annotations

from agents.registry import agent
from workers.context import AgentContext


@agent("draft", max_attempts=2, timeout=30)
def draft(ctx: AgentContext) -> dict:
    """Writes a draft from its input; shows what reviewers told it (ctx.human)."""
    text = ctx.input.get("topic", "draft")
    if "feedback" in ctx.human:
        text += f" (revised: {ctx.human['feedback']})"
    return {"text": text, "attempt": ctx.attempt, "human": ctx.human, "upstream": ctx.upstream, "input": ctx.input}


@agent("asker", max_attempts=2, timeout=30)
def asker(ctx: AgentContext) -> dict:
    """Asks a human the question in its input, then answers with what it was told."""
    answer = ctx.ask_human(ctx.input.get("question", "Which colour?"), options=ctx.input.get("options"))
    return {"answer": answer, "attempt": ctx.attempt}
