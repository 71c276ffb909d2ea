"""How the API answers a purged job: 410, with what retention kept."""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.response import Response

from jobs.models import Job, Task


class KeptTaskSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()
    agent = serializers.CharField()
    status = serializers.CharField()
    attempt = serializers.IntegerField()
    error = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class KeptJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    owner = serializers.CharField(source="owner.username")
    status = serializers.CharField()
    requirements = serializers.CharField()
    metadata = serializers.DictField()
    error = serializers.CharField()
    tokens_used = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    purged_at = serializers.DateTimeField()


def job_kept(job: Job) -> dict:
    kept = KeptJobSerializer(job).data
    tasks = Task.objects.filter(job=job).order_by("created_at", "key")
    kept["tasks"] = KeptTaskSerializer(tasks, many=True).data
    return kept


def job_purged_response(job: Job) -> Response | None:
    """None for a job that was not purged; else the 410 its endpoints answer."""
    if job.purged_at is None:
        return None
    body = {
        "error": "job_purged",
        "detail": (
            f"The job's events, outputs and artifacts were purged on {job.purged_at.isoformat()} "
            "(retention); its status, tasks and timings are in 'kept'."
        ),
        "kept": job_kept(job),
    }
    return Response(body, status=status.HTTP_410_GONE)
