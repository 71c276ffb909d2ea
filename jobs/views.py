"""The jobs REST API: one view per operation; each validates, calls a service or a
selector, and serializes the answer."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError, Conflict
from core.fields import (
    BoundedJSONObjectField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
)
from core.openapi import BAD_REQUEST, NOT_FOUND, UNAUTHENTICATED, error, page_of
from jobs.artifact_views import ArtifactOutputSerializer
from jobs.models import JobStatus
from jobs.purged import job_purged_response
from jobs.selectors import job_artifacts, job_events, job_get, job_list, job_tasks
from jobs.services import job_cancel, job_submit


class BudgetInputSerializer(serializers.Serializer):
    """A job's limits (jobs.budgets); each optional, absent means unlimited."""

    max_tasks = StrictIntegerField(required=False, min_value=1, max_value=settings.AGENTBUS_MAX_PLAN_TASKS)
    max_tokens = StrictIntegerField(required=False, min_value=1, max_value=2_000_000_000)
    deadline_seconds = StrictIntegerField(required=False, min_value=1, max_value=30 * 24 * 3600)


class ConcurrencyInputSerializer(serializers.Serializer):
    """At most ``limit`` tasks of the jobs naming ``key`` run at once over the whole
    deployment (jobs.scheduling); keys are the submitter's own."""

    key = StrictCharField(max_length=100)
    limit = StrictIntegerField(min_value=1, max_value=100_000)


class WaitingOutputSerializer(serializers.Serializer):
    """Why a queued task has not been sent to a worker yet (jobs.scheduling)."""

    reason = serializers.ChoiceField(choices=["capacity", "priority", "fair_share", "concurrency_key", "rate_limit"])
    since = serializers.DateTimeField()


class TaskOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()
    agent = serializers.CharField()
    status = serializers.CharField()
    depends_on = serializers.ListField(child=serializers.CharField())
    attempt = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    timeout = serializers.IntegerField()
    progress = serializers.FloatField(allow_null=True)
    progress_message = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    queued_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    tokens_used = serializers.IntegerField()
    priority = serializers.IntegerField()
    waiting = serializers.SerializerMethodField()
    duration = serializers.SerializerMethodField()

    @extend_schema_field(WaitingOutputSerializer(allow_null=True))
    def get_waiting(self, task) -> dict | None:
        if task.status != "queued" or task.sent_at is not None:
            return None
        return {"reason": task.wait_reason or "capacity", "since": task.queued_at}

    def get_duration(self, task) -> float | None:
        if task.started_at and task.finished_at:
            return round((task.finished_at - task.started_at).total_seconds(), 3)
        return None


class JobOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    owner = serializers.CharField(source="owner.username")
    status = serializers.CharField()
    requirements = serializers.CharField()
    priority = serializers.IntegerField()
    concurrency = serializers.SerializerMethodField()
    review_plan = serializers.BooleanField()
    metadata = serializers.DictField()
    remember = serializers.BooleanField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    last_seq = serializers.IntegerField()
    max_tasks = serializers.IntegerField(allow_null=True)
    max_tokens = serializers.IntegerField(allow_null=True)
    deadline_at = serializers.DateTimeField(allow_null=True)
    tokens_used = serializers.IntegerField()

    @extend_schema_field(ConcurrencyInputSerializer(allow_null=True))
    def get_concurrency(self, job) -> dict | None:
        if not job.concurrency_key:
            return None
        return {"key": job.concurrency_key.split(":", 1)[1], "limit": job.concurrency_limit}


class JobDetailOutputSerializer(JobOutputSerializer):
    """A job with its tasks (GET /jobs/{id}, and the answer to submit and cancel)."""

    tasks = TaskOutputSerializer(many=True)


EXAMPLE_JOB_ID = "6f1c2b1e-8a4d-4e55-9d1a-3b2f1c0d9e8f"
EXAMPLE_JOB = {
    "id": EXAMPLE_JOB_ID,
    "owner": "alice",
    "status": "running",
    "requirements": "Summarise the report, then translate the summary.",
    "priority": 0,
    "review_plan": False,
    "metadata": {"ticket": "OPS-12"},
    "error": "",
    "created_at": "2026-11-24T10:00:00Z",
    "started_at": "2026-11-24T10:00:01Z",
    "finished_at": None,
    "last_seq": 5,
    "tasks": [
        {
            "id": "0b7e6c1a-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
            "key": "summarise",
            "agent": "echo",
            "status": "running",
            "depends_on": [],
            "attempt": 1,
            "max_attempts": 3,
            "timeout": 300,
            "progress": 0.4,
            "progress_message": "reading",
            "error": "",
            "created_at": "2026-11-24T10:00:01Z",
            "queued_at": "2026-11-24T10:00:01Z",
            "started_at": "2026-11-24T10:00:02Z",
            "finished_at": None,
            "next_attempt_at": None,
            "priority": 0,
            "waiting": None,
            "duration": None,
        }
    ],
}
EXAMPLE_SUBMIT = {
    "requirements": "Summarise the report, then translate the summary.",
    "plan": {
        "tasks": [
            {"key": "summarise", "agent": "echo", "input": {"text": "..."}},
            {"key": "translate", "agent": "echo", "depends_on": ["summarise"], "review": "after", "max_attempts": 2},
        ]
    },
    "priority": 0,
    "metadata": {"ticket": "OPS-12"},
}
EXAMPLE_EVENT = {
    "seq": 4,
    "type": "task.status",
    "job": EXAMPLE_JOB_ID,
    "task": "0b7e6c1a-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
    "status": "running",
    "at": "2026-11-24T10:00:02Z",
    "key": "summarise",
    "attempt": 1,
    "worker": "worker-1",
}
JOB_NOT_FINISHED = error(
    "The job has not finished (or cannot be cancelled: it already has).",
    OpenApiExample(
        "Not finished",
        value={
            "error": "job_not_finished",
            "detail": "The job is running; results are available once it has finished.",
        },
        response_only=True,
        status_codes=["409"],
    ),
)


class JobListView(GenericAPIView):
    """GET: the caller's jobs, newest first (filter ?status=). POST: submit a job."""

    @extend_schema_serializer(component_name="JobSubmit")
    class InputSerializer(serializers.Serializer):
        requirements = StrictCharField(
            required=False, allow_blank=True, default="", max_length=settings.AGENTBUS_MAX_REQUIREMENTS_CHARS
        )
        plan = serializers.JSONField(required=False)
        review_plan = StrictBooleanField(required=False, default=False)
        priority = StrictIntegerField(required=False, default=0, min_value=-100, max_value=100)
        concurrency = ConcurrencyInputSerializer(required=False)
        metadata = BoundedJSONObjectField(max_bytes=16 * 1024, required=False, default=dict)
        # Store the job's final outputs as memories of its owner when it succeeds.
        remember = StrictBooleanField(required=False, default=False)
        budget = BudgetInputSerializer(required=False)
        # Webhook deliveries of this job's events to one URL (webhooks/).
        # Webhook deliveries of this job's events to one URL: {"url", "events"?, "secret"?},
        # checked by the webhooks app when the job is written (webhooks/apps.py).
        notify = BoundedJSONObjectField(max_bytes=4 * 1024, required=False)

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=JobStatus.values, required=False)

    @extend_schema(
        operation_id="jobs_list",
        summary="List the caller's jobs",
        description="Newest first, paginated (`page`, `page_size`); staff see every user's jobs.",
        parameters=[
            FilterSerializer,
            OpenApiParameter("page", int, description="Page number, from 1."),
        ],
        responses={
            200: page_of("JobPage", JobOutputSerializer),
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
        },
        examples=[
            OpenApiExample(
                "A page of jobs",
                value={
                    "count": 1,
                    "next": None,
                    "previous": None,
                    "results": [{k: v for k, v in EXAMPLE_JOB.items() if k != "tasks"}],
                },
                response_only=True,
            )
        ],
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = job_list(user=request.user, status=filters.validated_data.get("status"))
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response(JobOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="jobs_submit",
        summary="Submit a job",
        description=(
            "Validates the plan against the registered agents and stores the job in one transaction; "
            "the orchestrator starts it on commit. Send an `Idempotency-Key` to make retries safe: "
            "the same key and body answer 200 with the first job, the same key with another body 422."
        ),
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, description="1 to 255 characters, unique per user."
            )
        ],
        responses={
            201: OpenApiResponse(JobDetailOutputSerializer, description="Created."),
            200: OpenApiResponse(JobDetailOutputSerializer, description="An idempotent replay: the job first created."),
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
            422: error("The Idempotency-Key was used with another body."),
        },
        examples=[
            OpenApiExample("A two-step plan", value=EXAMPLE_SUBMIT, request_only=True),
            OpenApiExample(
                "The new job", value={**EXAMPLE_JOB, "status": "submitted"}, response_only=True, status_codes=["201"]
            ),
        ],
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ApplicationError("The body must be a JSON object.", fields={"body": ["must be a JSON object"]})
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (1 <= len(key) <= 255):
            raise ApplicationError(
                "Idempotency-Key must be 1 to 255 characters.", fields={"Idempotency-Key": ["1 to 255 characters"]}
            )
        job, created = job_submit(owner=request.user, spec=dict(data.validated_data), idempotency_key=key)
        headers = {"Location": reverse("job-detail", kwargs={"job_id": job.id})}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        # A new job's reply leaves its tasks out (GET /jobs/{id} has them; a job without
        # a plan has none yet), so answering costs no query; a replay shows the job as
        # it is now.
        body = {**JobOutputSerializer(job).data, "tasks": []} if created else job_detail_body(job)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK, headers=headers)


def job_detail_body(job) -> dict:
    """A job with its tasks (GET /jobs/{id}), also answered by protocols/."""
    body = JobOutputSerializer(job).data
    body["tasks"] = TaskOutputSerializer(job_tasks(job=job), many=True).data
    return body


class JobDetailView(APIView):
    @extend_schema(
        operation_id="jobs_retrieve",
        summary="A job with its tasks",
        responses={200: JobDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND},
        examples=[OpenApiExample("A running job", value=EXAMPLE_JOB, response_only=True)],
    )
    def get(self, request, job_id):
        job = job_get(user=request.user, job_id=job_id)
        return job_purged_response(job) or Response(job_detail_body(job))


class JobResultsView(APIView):
    """The final result and each task's output; 409 while the job is not finished."""

    @extend_schema(
        operation_id="jobs_results",
        summary="A finished job's result and each task's output",
        responses={
            200: inline_serializer(
                name="JobResults",
                fields={
                    "job": serializers.UUIDField(),
                    "status": serializers.CharField(),
                    "error": serializers.CharField(),
                    "result": serializers.JSONField(allow_null=True),
                    "tasks": serializers.DictField(
                        child=inline_serializer(
                            name="TaskResult",
                            fields={
                                "id": serializers.UUIDField(),
                                "agent": serializers.CharField(),
                                "status": serializers.CharField(),
                                "attempt": serializers.IntegerField(),
                                "output": serializers.JSONField(allow_null=True),
                                "error": serializers.CharField(),
                            },
                        ),
                        help_text="By task key.",
                    ),
                    "artifacts": serializers.ListField(child=serializers.DictField()),
                },
            ),
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            409: JOB_NOT_FINISHED,
        },
        examples=[
            OpenApiExample(
                "Succeeded",
                value={
                    "job": EXAMPLE_JOB_ID,
                    "status": "succeeded",
                    "error": "",
                    "result": {"outputs": {"translate": {"text": "..."}}},
                    "tasks": {
                        "translate": {
                            "id": "0b7e6c1a-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
                            "agent": "echo",
                            "status": "succeeded",
                            "attempt": 1,
                            "output": {"text": "..."},
                            "error": "",
                        }
                    },
                    "artifacts": [],
                },
                response_only=True,
            )
        ],
    )
    def get(self, request, job_id):
        job = job_get(user=request.user, job_id=job_id)
        if gone := job_purged_response(job):
            return gone
        return Response(job_results_body(job, request=request))


def job_results_body(job, *, request=None) -> dict:
    """GET /jobs/{id}/results, also answered by the MCP and A2A servers (protocols/)."""
    if not job.is_finished:
        raise Conflict(
            f"The job is {job.status}; results are available once it has finished.",
            code="job_not_finished",
        )
    tasks = job_tasks(job=job).only(
        "id", "key", "agent", "status", "attempt", "output", "error", "tokens_used", "usage"
    )
    artifacts = ArtifactOutputSerializer(job_artifacts(job=job), many=True, context={"request": request}).data
    return {
        "job": str(job.id),
        "status": job.status,
        "error": job.error,
        "result": job.result,
        "tasks": {
            t.key: {
                "id": str(t.id),
                "agent": t.agent,
                "status": t.status,
                "attempt": t.attempt,
                "output": t.output,
                "error": t.error,
                "tokens_used": t.tokens_used,
                "usage": t.usage,
            }
            for t in tasks
        },
        "tokens_used": job.tokens_used,
        "artifacts": artifacts,
    }


class JobCancelView(APIView):
    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a job",
        description="Unfinished tasks are cancelled; running ones are stopped by their worker within a heartbeat.",
        request=None,
        responses={200: JobDetailOutputSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND, 409: JOB_NOT_FINISHED},
        examples=[OpenApiExample("Cancelled", value={**EXAMPLE_JOB, "status": "cancelled"}, response_only=True)],
    )
    def post(self, request, job_id):
        job = job_cancel(job=job_get(user=request.user, job_id=job_id))
        return Response(job_detail_body(job))


class JobEventsView(APIView):
    """The job's event log after sequence number ``after``, to catch up after a disconnect."""

    class FilterSerializer(serializers.Serializer):
        after = serializers.IntegerField(required=False, default=0, min_value=0)
        limit = serializers.IntegerField(required=False, default=1000, min_value=1, max_value=1000)

    @extend_schema(
        operation_id="jobs_events",
        summary="A job's event log after a sequence number",
        description=(
            "Each event is `{seq, type, job, task?, status?, at, ...data}` with gap-free `seq` per job. "
            "The websocket `/ws/jobs/{id}?after=N` sends the same objects, then live ones."
        ),
        parameters=[FilterSerializer],
        responses={
            200: inline_serializer(
                name="JobEventLog",
                fields={
                    "job": serializers.UUIDField(),
                    "last_seq": serializers.IntegerField(),
                    "events": serializers.ListField(child=serializers.DictField()),
                },
            ),
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
        },
        examples=[
            OpenApiExample(
                "After seq 3",
                value={"job": EXAMPLE_JOB_ID, "last_seq": 4, "events": [EXAMPLE_EVENT]},
                response_only=True,
            )
        ],
    )
    def get(self, request, job_id):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        job = job_get(user=request.user, job_id=job_id)
        if gone := job_purged_response(job):
            return gone
        events = job_events(job=job, **filters.validated_data)
        messages = [e.as_message() for e in events]
        return Response({"job": str(job.id), "last_seq": job.last_seq, "events": messages})
