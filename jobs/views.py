"""The jobs REST API: one view per operation; each validates, calls a service or a
selector, and serializes the answer."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from agentbus_site.api_errors import ApplicationError
from jobs.fields import BoundedJSONObjectField, StrictBooleanField, StrictCharField, StrictIntegerField
from jobs.models import JobStatus
from jobs.selectors import job_events, job_get, job_list, job_tasks
from jobs.services import job_cancel, job_submit


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
    duration = serializers.SerializerMethodField()

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
    review_plan = serializers.BooleanField()
    metadata = serializers.DictField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    last_seq = serializers.IntegerField()


class JobListView(GenericAPIView):
    """GET: the caller's jobs, newest first (filter ?status=). POST: submit a job."""

    class InputSerializer(serializers.Serializer):
        requirements = StrictCharField(
            required=False, allow_blank=True, default="", max_length=settings.AGENTBUS_MAX_REQUIREMENTS_CHARS
        )
        plan = serializers.JSONField(required=False)
        review_plan = StrictBooleanField(required=False, default=False)
        priority = StrictIntegerField(required=False, default=0, min_value=-100, max_value=100)
        metadata = BoundedJSONObjectField(max_bytes=16 * 1024, required=False, default=dict)

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=JobStatus.values, required=False)

    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = job_list(user=request.user, status=filters.validated_data.get("status"))
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response(JobOutputSerializer(page, many=True).data)

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
        headers = {"Location": f"/jobs/{job.id}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        # A job just created has no task rows yet (the orchestrator writes them), so
        # the reply skips the tasks query; a replay shows the job as it is now.
        body = _job_detail(job) if not created else {**JobOutputSerializer(job).data, "tasks": []}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK, headers=headers)


def _job_detail(job) -> dict:
    body = JobOutputSerializer(job).data
    body["tasks"] = TaskOutputSerializer(job_tasks(job=job), many=True).data
    return body


class JobDetailView(APIView):
    def get(self, request, job_id):
        return Response(_job_detail(job_get(user=request.user, job_id=job_id)))


class JobResultsView(APIView):
    """The final result and each task's output; 409 while the job is not finished."""

    def get(self, request, job_id):
        job = job_get(user=request.user, job_id=job_id)
        if not job.is_finished:
            raise ApplicationError(
                f"The job is {job.status}; results are available once it has finished.",
                code="job_not_finished",
                status_code=status.HTTP_409_CONFLICT,
            )
        tasks = job_tasks(job=job).only("id", "key", "agent", "status", "attempt", "output", "error")
        return Response(
            {
                "job": str(job.id),
                "status": job.status,
                "error": job.error,
                "result": job.result,
                "tasks": {
                    t.key: {"id": str(t.id), "agent": t.agent, "status": t.status, "attempt": t.attempt, "output": t.output, "error": t.error}
                    for t in tasks
                },
                "artifacts": [],
            }
        )


class JobCancelView(APIView):
    def post(self, request, job_id):
        job = job_cancel(job=job_get(user=request.user, job_id=job_id))
        return Response(_job_detail(job))


class JobEventsView(APIView):
    """The job's event log after sequence number ``after``, to catch up after a disconnect."""

    class FilterSerializer(serializers.Serializer):
        after = serializers.IntegerField(required=False, default=0, min_value=0)
        limit = serializers.IntegerField(required=False, default=1000, min_value=1, max_value=1000)

    def get(self, request, job_id):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        job = job_get(user=request.user, job_id=job_id)
        events = job_events(job=job, **filters.validated_data)
        messages = [e.as_message() for e in events]
        return Response({"job": str(job.id), "last_seq": job.last_seq, "events": messages})
