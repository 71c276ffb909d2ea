"""The orchestrator's inbox: a Redis list of job ids that need its attention.

A message is only a hint ("look at job X now"), never the truth: the orchestrator reads
the job from PostgreSQL and acts on what it finds there, and its reconciler finds the
same work without a message. So a lost, duplicated or forged message cannot change
what happens, only how soon; that is why these hints need no signature.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction

from agentbus_site.redis_connection import redis_client

logger = logging.getLogger(__name__)

INBOX_KEY = "agentbus:orchestrator:inbox"


def orchestrator_notify(job_id) -> None:
    """Wake the orchestrator for this job once the current transaction commits."""
    transaction.on_commit(lambda: _push(str(job_id)))


def _push(job_id: str) -> None:
    try:
        redis_client().lpush(INBOX_KEY, job_id)
    except Exception:
        # PostgreSQL has the change; the reconciler will find it without the hint.
        logger.warning("could not notify the orchestrator about job %s; it will reconcile", job_id)


def inbox_receive(timeout: float, batch: int = 200) -> list[uuid.UUID]:
    """Wait up to ``timeout`` seconds for hints; returns distinct job ids, oldest first."""
    client = redis_client()
    first = client.brpop([INBOX_KEY], timeout=timeout)
    if first is None:
        return []
    raw = [first[1], *(client.rpop(INBOX_KEY, batch - 1) or [])]
    ids: dict[uuid.UUID, None] = {}
    for item in raw:
        try:
            ids[uuid.UUID(item.decode() if isinstance(item, bytes) else item)] = None
        except (ValueError, AttributeError):
            logger.warning("dropped a malformed orchestrator hint: %r", item[:100])
    return list(ids)
