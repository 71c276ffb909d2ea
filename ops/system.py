"""What the running system looks like: orchestrators, workers, queues. ``GET /system``.

Orchestrators (the leader and its standbys) write a heartbeat to one Redis hash on
every pass of their loop (``orchestrator_heartbeat``); workers are RQ's own registry,
with the heartbeat RQ keeps for each; queue depths come from RQ. All of it lives in
Redis and is rebuilt within a second of Redis coming back empty, so nothing here needs
PostgreSQL. Staff only: it names hosts and processes.
"""

from __future__ import annotations

from typing import ClassVar

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.heartbeats import system_status
from core.openapi import UNAUTHENTICATED, error

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
