"""Heartbeats of the processes, in Redis: orchestrators write theirs, RQ workers keep
their own; staff read them all (GET /system, the dashboard's strip) with the queues.
The leader lock's key lives here too, so that reading who leads needs no orchestrator
code."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import UTC, datetime

from django.conf import settings
from redis.exceptions import RedisError

from core.redis import redis_client

LEADER_KEY = "agentbus:orchestrator:leader"


def leader_identity() -> str | None:
    value = redis_client().get(LEADER_KEY)
    return value.decode() if value else None


logger = logging.getLogger(__name__)

ORCHESTRATORS_KEY = "agentbus:orchestrators"
# An orchestrator silent this many lock TTLs is gone (killed, or its host is): dropped.
_FORGET_AFTER_TTLS = 10
_last_beat: dict[str, float] = {}


def orchestrator_heartbeat(identity: str, *, leading: bool) -> None:
    """Record that this orchestrator is alive (and whether it leads); at most once a
    second per process, one Redis write. Never raises: a heartbeat is not worth a crash."""
    now = time.time()
    if now - _last_beat.get(identity, 0.0) < 1.0 and _last_beat.get(f"{identity}:leading") == leading:
        return
    _last_beat[identity] = now
    _last_beat[f"{identity}:leading"] = leading
    beat = {"at": now, "leading": leading, "host": socket.gethostname(), "pid": os.getpid()}
    try:
        redis_client().hset(ORCHESTRATORS_KEY, identity, json.dumps(beat))
    except RedisError as exc:
        logger.debug("orchestrator heartbeat not written: %s", exc)


def _iso(ts: float | datetime | None) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def _age(ts: datetime | None, now: datetime) -> float | None:
    if ts is None:
        return None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return round(max(0.0, (now - ts).total_seconds()), 3)


def orchestrators_status() -> dict:
    client = redis_client()
    now = time.time()
    forget_before = now - settings.AGENTBUS_LEADER_LOCK_TTL * _FORGET_AFTER_TTLS
    leader = leader_identity()
    beats = []
    for identity, raw in client.hgetall(ORCHESTRATORS_KEY).items():
        identity = identity.decode()
        try:
            beat = json.loads(raw)
        except ValueError:
            beat = {"at": 0}
        if beat.get("at", 0) < forget_before:
            client.hdel(ORCHESTRATORS_KEY, identity)
            continue
        beats.append(
            {
                "identity": identity,
                "role": "leader" if identity == leader else "standby",
                "host": beat.get("host"),
                "pid": beat.get("pid"),
                "last_heartbeat": _iso(beat["at"]),
                "heartbeat_age_seconds": round(now - beat["at"], 3),
            }
        )
    beats.sort(key=lambda b: (b["role"] != "leader", b["identity"]))
    return {
        "leader": leader,
        "instances": beats,
    }


def workers_status() -> list[dict]:
    from rq import Worker

    now = datetime.now(UTC)
    workers = []
    for worker in Worker.all(connection=redis_client()):
        state = worker.get_state()
        job = worker.get_current_job_id()
        workers.append(
            {
                "name": worker.name,
                "host": worker.hostname,
                "pid": worker.pid,
                "queues": worker.queue_names(),
                "state": str(getattr(state, "value", state)),
                "current_job": job,
                "last_heartbeat": _iso(worker.last_heartbeat),
                "heartbeat_age_seconds": _age(worker.last_heartbeat, now),
                "started_at": _iso(worker.birth_date),
                "successful_jobs": worker.successful_job_count,
                "failed_jobs": worker.failed_job_count,
            }
        )
    workers.sort(key=lambda w: w["name"])
    return workers


def queues_status() -> dict:
    from core.queue import queue_get

    now = datetime.now(UTC)
    queues = {}
    for name in settings.AGENTBUS_QUEUES:
        queue = queue_get(name)
        first = queue.get_job_ids(0, 1)
        job = queue.fetch_job(first[0]) if first else None
        queues[name] = {
            "depth": queue.count,
            "oldest_age_seconds": _age(job.enqueued_at, now) if job is not None else 0.0,
            "running": queue.started_job_registry.count,
            "failed": queue.failed_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count,
        }
    return queues


def system_status() -> dict:
    return {
        "at": _iso(time.time()),
        "orchestrators": orchestrators_status(),
        "workers": workers_status(),
        "queues": queues_status(),
    }
