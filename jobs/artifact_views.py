"""Artifacts: files agents wrote (``ctx.artifact``), downloadable by the job's owner."""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from jobs.selectors import job_artifact_get


class ArtifactOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    task = serializers.CharField(source="task.key")
    content_type = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    def get_url(self, artifact) -> str:
        path = artifact_download_path(artifact)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


def artifact_download_path(artifact) -> str:
    return reverse("job-artifact", kwargs={"job_id": artifact.job_id, "artifact_id": artifact.id})


class ArtifactDownloadView(APIView):
    """The file itself, as an attachment; another user's artifact is a 404."""

    @extend_schema(
        operation_id="jobs_artifact_download", summary="Download an artifact", responses={200: OpenApiTypes.BINARY}
    )
    def get(self, request, job_id, artifact_id):
        artifact = job_artifact_get(user=request.user, job_id=job_id, artifact_id=artifact_id)
        try:
            handle = artifact.file.open("rb")
        except FileNotFoundError:
            raise Http404("The artifact's file is gone.") from None
        # Served as an attachment (and nosniff, by SecurityMiddleware): an agent's HTML
        # must never run as a page of this site.
        return FileResponse(handle, as_attachment=True, filename=artifact.name, content_type=artifact.content_type)
