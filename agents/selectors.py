"""Reads about agents: the registry joined with their live health."""

from __future__ import annotations

import logging

from rq import Worker

from agents.breakers import breaker_status
from agents.limits import slots_in_use
from agents.rate_limits import rate_state
from agents.registry import agents_all
from core.redis import redis_client

logger = logging.getLogger(__name__)


def agents_with_health() -> list[dict]:
    """Every agent with ``health``: ``ok``, ``degraded`` (circuit half-open: on trial),
    ``down`` (circuit open) or ``no_workers`` (nobody serves its queue), and the
    number of workers on its queue; plus its circuit breaker's state and its rate
    limits' window (``rate_limit``, None when it has none)."""
    try:
        workers = Worker.all(connection=redis_client())
        serving: dict[str, int] = {}
        for worker in workers:
            for queue in worker.queue_names():
                serving[queue] = serving.get(queue, 0) + 1
        redis_ok = True
    except Exception as exc:
        logger.warning("cannot read workers from Redis: %s", exc)
        serving, redis_ok = {}, False
    agents = []
    for spec in agents_all():
        item = spec.as_dict()
        try:
            circuit = breaker_status(spec)
            running = slots_in_use(spec)
        except Exception:
            circuit, running = {"state": "unknown"}, None
        workers_on_queue = serving.get(spec.queue, 0)
        if circuit["state"] == "open":
            health = "down"
        elif circuit["state"] == "half-open":
            health = "degraded"
        elif not redis_ok:
            health = "unknown"
        elif workers_on_queue == 0:
            health = "no_workers"
        else:
            health = "ok"
        item["health"] = {"status": health, "workers": workers_on_queue, "running": running}
        item["circuit"] = circuit
        item["rate_limit"] = _rate_limit_or_unknown(spec)
        agents.append(item)
    return agents


def _rate_limit_or_unknown(spec) -> dict | None:
    try:
        return rate_state(spec)
    except Exception as exc:  # Redis down: the limits are still known, the counts are not
        logger.warning("cannot read the rate limits of agent %s from Redis: %s", spec.name, exc)
        return {
            "rpm": spec.rate_limit_rpm,
            "tpm": spec.rate_limit_tpm,
            "requests_last_minute": None,
            "tokens_last_minute": None,
            "wait_seconds": None,
        }
