"""Reads on jobs, always scoped to what the caller may see (staff see all)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from jobs.models import Job, JobEvent, Task


def jobs_visible_to(user) -> QuerySet[Job]:
    jobs = Job.objects.all()
    return jobs if user.is_staff else jobs.filter(owner=user)


def job_list(*, user, status: str | None = None) -> QuerySet[Job]:
    jobs = jobs_visible_to(user).select_related("owner").order_by("-created_at")
    if status:
        jobs = jobs.filter(status=status)
    return jobs


def job_get(*, user, job_id) -> Job:
    """The job, if the caller may see it; another user's job is a 404, never a 403."""
    job = jobs_visible_to(user).select_related("owner").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


def job_tasks(*, job: Job) -> QuerySet[Task]:
    return Task.objects.filter(job=job).order_by("created_at", "key")


def job_events(*, job: Job, after: int = 0, limit: int = 1000) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(job=job, seq__gt=after).order_by("seq")[:limit]


def job_artifacts(*, job: Job):
    from jobs.models import Artifact

    return Artifact.objects.filter(job=job).select_related("task").order_by("created_at", "name")


def job_artifact_get(*, user, job_id, artifact_id):
    """An artifact of a job the caller may see; anything else is a 404."""
    from jobs.models import Artifact

    job = job_get(user=user, job_id=job_id)
    artifact = Artifact.objects.filter(job=job, pk=artifact_id).first()
    if artifact is None:
        raise Http404("No such artifact.")
    return artifact
