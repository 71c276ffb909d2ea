"""The schedules REST API: one view per operation (HackSoft style)."""

from __future__ import annotations

import json

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from core.openapi import BAD_REQUEST, NOT_FOUND, UNAUTHENTICATED, page_of
from jobs.views import JobListView
from schedules.models import CatchupPolicy, OverlapPolicy
from schedules.selectors import schedule_get, schedule_list, schedule_runs
from schedules.services import (
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_trigger,
    schedule_update,
    ticks_upcoming,
)


class ScheduleInputSerializer(serializers.Serializer):
    name = StrictCharField(required=False, allow_blank=True, max_length=200, default="")
    # The body of POST /jobs, checked by the same serializer and the same service checks.
    job = JobListView.InputSerializer()
    cron = StrictCharField(required=False, allow_blank=True, max_length=200, default="")
    timezone = StrictCharField(required=False, max_length=64, default="UTC")
    interval_seconds = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=366 * 24 * 3600, default=None
    )
    overlap = serializers.ChoiceField(choices=OverlapPolicy.values, required=False, default=OverlapPolicy.SKIP)
    catchup = serializers.ChoiceField(choices=CatchupPolicy.values, required=False, default=CatchupPolicy.SKIP)
    catchup_window = StrictIntegerField(required=False, min_value=0, max_value=366 * 24 * 3600, default=3600)
    paused = StrictBooleanField(required=False, default=False)


class RunOutputSerializer(serializers.Serializer):
    tick = serializers.DateTimeField()
    action = serializers.CharField()
    job = serializers.UUIDField(source="job_id", allow_null=True)
    manual = serializers.BooleanField()
    detail = serializers.CharField()
    at = serializers.DateTimeField()


class ScheduleOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    owner = serializers.CharField(source="owner.username")
    name = serializers.CharField()
    job = serializers.JSONField(source="template")
    cron = serializers.CharField()
    timezone = serializers.CharField()
    interval_seconds = serializers.IntegerField(allow_null=True)
    overlap = serializers.CharField()
    catchup = serializers.CharField()
    catchup_window = serializers.IntegerField()
    paused = serializers.BooleanField()
    next_run_at = serializers.DateTimeField(allow_null=True)
    upcoming = serializers.SerializerMethodField()
    buffered_tick = serializers.DateTimeField(allow_null=True)
    last_run_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_upcoming(self, schedule) -> list[str]:
        return [t.isoformat() for t in ticks_upcoming(schedule)]


class ScheduleDetailOutputSerializer(ScheduleOutputSerializer):
    runs = serializers.SerializerMethodField()

    def get_runs(self, schedule) -> list[dict]:
        return RunOutputSerializer(schedule_runs(schedule=schedule), many=True).data


EXAMPLE_RUN = {
    "tick": "2026-12-02T08:00:00+00:00",
    "action": "started",
    "job": "6f1c2b1e-8a4d-4e55-9d1a-3b2f1c0d9e8f",
    "manual": False,
    "detail": "",
    "at": "2026-12-02T08:00:00.412000+00:00",
}
EXAMPLE_SCHEDULE = {
    "id": "2b8f0c7e-51a4-4d0e-9a43-0f3c2d1e4b5a",
    "owner": "alice",
    "name": "morning digest",
    "job": {"requirements": "digest", "plan": {"tasks": [{"key": "a", "agent": "echo", "input": {"n": 1}}]}},
    "cron": "0 9 * * 1-5",
    "timezone": "Europe/Paris",
    "interval_seconds": None,
    "overlap": "skip",
    "catchup": "run_once",
    "catchup_window": 3600,
    "paused": False,
    "next_run_at": "2026-12-03T08:00:00+00:00",
    "upcoming": ["2026-12-03T08:00:00+00:00", "2026-12-04T08:00:00+00:00", "2026-12-07T08:00:00+00:00"],
    "buffered_tick": None,
    "last_run_at": "2026-12-02T08:00:00.412000+00:00",
    "created_at": "2026-12-01T10:00:00+00:00",
    "updated_at": "2026-12-02T08:00:00.412000+00:00",
    "runs": [EXAMPLE_RUN],
}


def _example(value: dict, code: str = "200") -> list[OpenApiExample]:
    return [OpenApiExample("Example", value=value, response_only=True, status_codes=[code])]


def _plain(data: dict) -> dict:
    """Validated data as plain JSON (the template is stored and digested as JSON)."""
    return json.loads(json.dumps(data, default=str))


def _body(request) -> dict:
    if not isinstance(request.data, dict):
        raise ApplicationError("The body must be a JSON object.", fields={"body": ["must be a JSON object"]})
    return request.data


class ScheduleListView(GenericAPIView):
    """GET: the caller's schedules. POST: a new schedule."""

    @extend_schema(
        operation_id="schedules_list",
        summary="List the caller's schedules",
        responses={200: page_of("SchedulePage", ScheduleOutputSerializer), 401: UNAUTHENTICATED},
        examples=_example({"count": 1, "next": None, "previous": None, "results": [EXAMPLE_SCHEDULE]}),
    )
    def get(self, request):
        page = self.paginate_queryset(schedule_list(user=request.user))
        return self.get_paginated_response(ScheduleOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="schedules_create",
        summary="Create a schedule",
        description=(
            "`job` is the body of `POST /jobs`; give `cron` (with `timezone`) or `interval_seconds`. "
            "Overlap: skip, buffer_one, allow_all, cancel_other; catch-up: skip or run_once within `catchup_window`."
        ),
        request=ScheduleInputSerializer,
        responses={201: ScheduleDetailOutputSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED},
        examples=_example(EXAMPLE_SCHEDULE, "201"),
    )
    def post(self, request):
        data = ScheduleInputSerializer(data=_body(request))
        data.is_valid(raise_exception=True)
        fields = _plain(data.validated_data)
        template = fields.pop("job")
        schedule = schedule_create(owner=request.user, template=template, **fields)
        return Response(
            ScheduleDetailOutputSerializer(schedule).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/schedules/{schedule.id}"},
        )


class ScheduleDetailView(APIView):
    @extend_schema(
        operation_id="schedules_retrieve",
        summary="A schedule with its next ticks and recent runs",
        responses={200: ScheduleDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example(EXAMPLE_SCHEDULE),
    )
    def get(self, request, schedule_id):
        return Response(ScheduleDetailOutputSerializer(schedule_get(user=request.user, schedule_id=schedule_id)).data)

    @extend_schema(
        operation_id="schedules_update",
        summary="Change a schedule",
        request=ScheduleInputSerializer(partial=True),
        responses={200: ScheduleDetailOutputSerializer, 400: BAD_REQUEST, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example(EXAMPLE_SCHEDULE),
    )
    def patch(self, request, schedule_id):
        schedule = schedule_get(user=request.user, schedule_id=schedule_id)
        body = _body(request)
        data = ScheduleInputSerializer(data=body, partial=True)
        data.is_valid(raise_exception=True)
        # Only what the client sent: a partial serializer still fills in defaults.
        changes = {k: v for k, v in _plain(data.validated_data).items() if k in body}
        if "job" in changes:
            changes["template"] = changes.pop("job")
        schedule = schedule_update(schedule=schedule, changes=changes)
        return Response(ScheduleDetailOutputSerializer(schedule).data)

    @extend_schema(
        operation_id="schedules_delete",
        summary="Delete a schedule (its jobs stay)",
        responses={204: OpenApiResponse(description="Deleted."), 401: UNAUTHENTICATED, 404: NOT_FOUND},
    )
    def delete(self, request, schedule_id):
        schedule_delete(schedule=schedule_get(user=request.user, schedule_id=schedule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SchedulePauseView(APIView):
    @extend_schema(
        operation_id="schedules_pause",
        summary="Pause a schedule",
        request=None,
        responses={200: ScheduleDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example(EXAMPLE_SCHEDULE),
    )
    def post(self, request, schedule_id):
        schedule = schedule_pause(schedule=schedule_get(user=request.user, schedule_id=schedule_id))
        return Response(ScheduleDetailOutputSerializer(schedule).data)


class ScheduleResumeView(APIView):
    @extend_schema(
        operation_id="schedules_resume",
        summary="Resume a schedule from its next tick",
        request=None,
        responses={200: ScheduleDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example(EXAMPLE_SCHEDULE),
    )
    def post(self, request, schedule_id):
        schedule = schedule_resume(schedule=schedule_get(user=request.user, schedule_id=schedule_id))
        return Response(ScheduleDetailOutputSerializer(schedule).data)


class ScheduleTriggerView(APIView):
    @extend_schema(
        operation_id="schedules_trigger",
        summary="Run a schedule now (under its overlap policy)",
        request=None,
        responses={201: RunOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=_example({**EXAMPLE_RUN, "manual": True}, "201"),
    )
    def post(self, request, schedule_id):
        run = schedule_trigger(schedule=schedule_get(user=request.user, schedule_id=schedule_id))
        return Response(RunOutputSerializer(run).data, status=status.HTTP_201_CREATED)
