"""Agents for the fault tests. They run on their own queue, ``faults``, which only the
workers a fault test starts listen to, so a shared worker elsewhere in the session never
takes (or hides the loss of) a task the test is about to break."""

from __future__ import annotations

import time
from pathlib import Path

from agents.registry import agent
from workers.context import AgentContext

FAULTS_QUEUE = "faults"


@agent("lab_sleep", queue=FAULTS_QUEUE, max_attempts=4, timeout=60)
def lab_sleep(ctx: AgentContext) -> dict:
    """Sleeps ``seconds`` in small steps (so a signal lands promptly), then answers."""
    seconds = float(ctx.input.get("seconds", 0.2))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return {"slept": seconds, "attempt": ctx.attempt, "upstream": sorted(ctx.upstream)}


def touch_marker(job, *args, **kwargs) -> None:
    """An importable callable an attacker might name as an RQ callback: it creates the
    file named in the job's description, so a test can see whether it was ever called."""
    Path(job.description).touch()


@agent("lab_flaky", queue=FAULTS_QUEUE, max_attempts=3, timeout=30)
def lab_flaky(ctx: AgentContext) -> dict:
    """Fails its first attempt (a retry needs the orchestrator's clock), then answers."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return {"attempt": ctx.attempt}
