"""Waking the orchestrator early: a hint that timed work (a retry's backoff, a deferred
task) falls due before its next pass.

The orchestrator is never on a task's normal path (jobs.lifecycle dispatches in the
committing transaction); it only wakes for what needs a clock. Its loop sleeps until its
next reconcile pass or until the earliest hint it received, whichever comes first. A hint
is only a time ("look again at T"), never the truth: the orchestrator reads PostgreSQL and
acts on what it finds, and its reconciler finds the same work without any hint. So a lost,
duplicated or forged hint changes only how soon, and these need no signature.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

from core.redis import redis_client

logger = logging.getLogger(__name__)

WAKE_KEY = "agentbus:orchestrator:wake"


def orchestrator_wake(at: datetime) -> None:
    """Ask the orchestrator to look again at ``at``, once the current transaction commits."""
    transaction.on_commit(lambda: _push(at.timestamp()))


def _push(at: float) -> None:
    try:
        redis_client().lpush(WAKE_KEY, f"{at:.3f}")
    except Exception:
        # PostgreSQL has the work; the next reconcile pass finds it without the hint.
        logger.warning("could not wake the orchestrator; it will find the work on its next pass")


def wake_wait(timeout: float, batch: int = 500) -> float | None:
    """Wait up to ``timeout`` seconds for hints; returns the earliest time asked for."""
    client = redis_client()
    first = client.brpop([WAKE_KEY], timeout=max(timeout, 0.01))
    if first is None:
        return None
    raw = [first[1], *(client.rpop(WAKE_KEY, batch - 1) or [])]
    times = []
    for item in raw:
        try:
            times.append(float(item))
        except (TypeError, ValueError):
            logger.warning("dropped a malformed orchestrator hint: %r", item[:100])
    return min(times) if times else None
