"""What the running system looks like: orchestrators, workers, queues. ``GET /system``.

Orchestrators (the leader and its standbys) write a heartbeat to one Redis hash on
every pass of their loop (``orchestrator_heartbeat``); workers are RQ's own registry,
with the heartbeat RQ keeps for each; queue depths come from RQ. All of it lives in
Redis and is rebuilt within a second of Redis coming back empty, so nothing here needs
PostgreSQL. Staff only: it names hosts and processes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import ClassVar

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from agentbus_site.openapi import UNAUTHENTICATED, error
from agentbus_site.redis_connection import redis_client

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
    from orchestration.leader import leader_identity

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
    from workers.queue import queue_get

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


_EXAMPLE = {
    "at": "2026-11-24T10:00:00+00:00",
    "orchestrators": {
        "leader": "host-a:4242:1f2e3d4c",
        "instances": [
            {
                "identity": "host-a:4242:1f2e3d4c",
                "role": "leader",
                "host": "host-a",
                "pid": 4242,
                "last_heartbeat": "2026-11-24T09:59:59.700000+00:00",
                "heartbeat_age_seconds": 0.3,
            },
            {
                "identity": "host-b:977:9a8b7c6d",
                "role": "standby",
                "host": "host-b",
                "pid": 977,
                "last_heartbeat": "2026-11-24T09:59:59.500000+00:00",
                "heartbeat_age_seconds": 0.5,
            },
        ],
    },
    "workers": [
        {
            "name": "worker-1",
            "host": "host-a",
            "pid": 5151,
            "queues": ["default"],
            "state": "busy",
            "current_job": "task-0b7e6c1a-1d2e-4f3a-9b8c-7d6e5f4a3b2c-1",
            "last_heartbeat": "2026-11-24T09:59:58+00:00",
            "heartbeat_age_seconds": 2.0,
            "started_at": "2026-11-24T08:00:00+00:00",
            "successful_jobs": 1200,
            "failed_jobs": 3,
        }
    ],
    "queues": {"default": {"depth": 4, "oldest_age_seconds": 1.5, "running": 1, "failed": 0, "scheduled": 0}},
}


class SystemView(APIView):
    """Staff only: orchestrator leader and standbys, workers and queues, with heartbeats."""

    permission_classes: ClassVar[list] = [IsAdminUser]

    @extend_schema(
        operation_id="system_status",
        summary="Orchestrators, workers and queues, with their heartbeats (staff)",
        responses={
            200: inline_serializer(
                name="SystemStatus",
                fields={
                    "at": serializers.DateTimeField(),
                    "orchestrators": serializers.DictField(),
                    "workers": serializers.ListField(child=serializers.DictField()),
                    "queues": serializers.DictField(child=serializers.DictField()),
                },
            ),
            401: UNAUTHENTICATED,
            403: error("Only staff may see the system."),
        },
        examples=[OpenApiExample("Two orchestrators, one worker", value=_EXAMPLE, response_only=True)],
    )
    def get(self, request):
        return Response(system_status())
