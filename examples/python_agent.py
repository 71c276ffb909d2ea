"""An example Python agent module: copy it, then list it in AGENTBUS_AGENT_MODULES
(e.g. ``AGENTBUS_AGENT_MODULES=examples.python_agent``) for every process.

An agent is a function of its context. It returns any JSON value (the task's output);
raising fails the attempt (retried per ``max_attempts`` with backoff), raising
NonRetryableError fails it for good.
"""

from __future__ import annotations

from agents.registry import NonRetryableError, agent
from workers.context import AgentContext


@agent("word_count", queue="default", timeout=60, max_attempts=3, retry_backoff=1.0, concurrency=10)
def word_count(ctx: AgentContext) -> dict:
    """Counts the words of ``input.text`` (or of the upstream outputs' text)."""
    text = ctx.input.get("text") or " ".join(str(v) for v in ctx.upstream.values())
    if not isinstance(text, str) or not text.strip():
        raise NonRetryableError("input.text is empty")  # another attempt cannot fix this
    ctx.progress(0.5, "counting")  # pushed live to the job's watchers
    words = text.split()
    # A file for the results page: listed in GET /jobs/{id}/results with a download URL.
    ctx.artifact("words.txt", "\n".join(words), "text/plain")
    # Follow-up work joins the job's DAG (bounded by the job's max_tasks budget).
    if ctx.input.get("summarize") and len(words) > 50:
        ctx.spawn({"key": "summary", "agent": "echo", "input": {"words": len(words)}})
    return {"words": len(words), "attempt": ctx.attempt}


@agent("title", timeout=120)
def title(ctx: AgentContext) -> dict:
    """Asks the configured LLM (AGENTBUS_LLM_*) for a title; tokens count against the
    job's max_tokens, and the call runs inside this agent's circuit breaker."""
    reply = ctx.llm([{"role": "user", "content": f"A five-word title for: {ctx.requirements}"}], max_tokens=20)
    return {"title": reply.text.strip(), "tokens": reply.usage["total_tokens"]}
