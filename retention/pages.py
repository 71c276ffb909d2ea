"""The dashboard's page for a purged job: 410, with what was kept."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs.models import Task


def job_purged_page(request: HttpRequest, job) -> HttpResponse:
    tasks = Task.objects.filter(job=job).order_by("created_at", "key")
    return render(request, "retention/job_purged.html", {"job": job, "tasks": tasks}, status=410)
