"""The operators' admin: lists with filters and search, and actions that go through
the same services as the API."""

from __future__ import annotations

import pytest
from django.test import Client

from jobs.models import Job, JobStatus, Task, TaskStatus
from tests.conftest import make_user
from tests.pages.test_pages import make_job


@pytest.fixture
def operator(db):
    user = make_user("olga", staff=True)
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_jobs_tasks_and_events_with_filters_and_search(operator):
    owner = make_user("carol")
    job = make_job(owner, requirements="quarterly numbers", status=JobStatus.RUNNING, tasks={"a": TaskStatus.RUNNING})
    for url in (
        "/admin/jobs/job/?status__exact=running&q=quarterly",
        f"/admin/jobs/job/{job.id}/change/",
        "/admin/jobs/task/?status__exact=running",
        "/admin/jobs/jobevent/",
        "/admin/accounts/apitoken/",
        "/admin/auth/user/",
    ):
        assert operator.get(url).status_code == 200, url
    assert "quarterly numbers" in operator.get("/admin/jobs/job/?q=quarterly").content.decode()
    assert "/admin/rq/" in operator.get("/admin/").content.decode()


def test_the_cancel_action_cancels_the_selected_jobs(operator):
    owner = make_user("carol")
    running = make_job(owner, status=JobStatus.RUNNING, tasks={"a": TaskStatus.RUNNING})
    finished = make_job(owner, status=JobStatus.SUCCEEDED)
    response = operator.post(
        "/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [running.id, finished.id]}, follow=True
    )
    assert Job.objects.get(pk=running.pk).status == JobStatus.CANCELLED
    assert Task.objects.get(job=running).status == TaskStatus.CANCELLED
    assert Job.objects.get(pk=finished.pk).status == JobStatus.SUCCEEDED
    assert "The job is already succeeded." in response.content.decode()


def test_the_retry_action_puts_failed_tasks_back_to_pending(operator):
    owner = make_user("carol")
    job = make_job(
        owner,
        status=JobStatus.FAILED,
        tasks={"a": TaskStatus.SUCCEEDED, "b": TaskStatus.FAILED, "c": TaskStatus.SUCCEEDED, "d": TaskStatus.SKIPPED},
    )
    Job.objects.filter(pk=job.pk).update(started_at=job.created_at)
    operator.post("/admin/jobs/job/", {"action": "retry_failed_tasks", "_selected_action": [job.id]})
    statuses = dict(Task.objects.filter(job=job).values_list("key", "status"))
    # b is ready again and dispatched by the retry itself; d waits for it.
    assert statuses == {"a": "succeeded", "b": "queued", "c": "succeeded", "d": "pending"}
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_jobs_cannot_be_added_or_edited_by_hand_in_the_admin(operator):
    job = make_job(make_user("carol"))
    assert operator.get("/admin/jobs/job/add/").status_code == 403
    operator.post(f"/admin/jobs/job/{job.id}/change/", {"status": "succeeded"})
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUBMITTED
