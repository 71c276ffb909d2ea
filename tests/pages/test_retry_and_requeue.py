"""The operator's levers behind the dashboard's buttons and the admin's actions, end to
end with a real orchestrator and worker: retry a failed job's failed tasks, and resend
the messages of queued tasks."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.utils import timezone

from core.errors import Conflict, http_status_of
from jobs.models import Job, JobEvent, JobStatus, Task, TaskStatus
from jobs.services import job_requeue, job_retry_failed, job_submit
from tests.conftest import job_wait, make_user, plan

pytestmark = pytest.mark.django_db(transaction=True)


def test_retrying_a_failed_job_reruns_only_its_failed_and_skipped_tasks_until_it_succeeds(pipeline):
    owner = make_user("rita")
    body = plan(
        {"key": "ok", "agent": "echo"},
        # Fails on attempts 1 and 2 (its budget), succeeds on 3: only after a retry.
        {"key": "flaky", "agent": "flaky", "max_attempts": 2, "input": {"succeed_on": 3}},
        {"key": "after", "agent": "echo", "depends_on": ["flaky", "ok"]},
    )
    job, _ = job_submit(owner=owner, spec={"plan": body})
    assert job_wait(job.id).status == JobStatus.FAILED
    before = {t.key: t for t in Task.objects.filter(job=job)}
    assert before["after"].status == TaskStatus.SKIPPED

    job_retry_failed(job=job)

    job = job_wait(job.id)
    assert job.status == JobStatus.SUCCEEDED and job.error == ""
    after = {t.key: t for t in Task.objects.filter(job=job)}
    # The task that had succeeded was kept, not run again.
    assert (after["ok"].attempt, after["ok"].finished_at) == (1, before["ok"].finished_at)
    # Attempt numbers go on from where they were, with a fresh budget of two.
    assert (after["flaky"].attempt, after["flaky"].max_attempts, after["flaky"].output) == (3, 4, {"attempt": 3})
    assert after["after"].status == TaskStatus.SUCCEEDED
    statuses = list(
        JobEvent.objects.filter(job=job, type="job.status").order_by("seq").values_list("status", flat=True)
    )
    assert statuses == ["submitted", "running", "failed", "running", "succeeded"]
    seqs = list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_job_that_is_running_or_succeeded_cannot_be_retried(pipeline):
    owner = make_user("sven")
    job, _ = job_submit(owner=owner, spec={"plan": plan({"key": "x", "agent": "echo"})})
    job_wait(job.id)
    with pytest.raises(Conflict) as refused:
        job_retry_failed(job=job)
    assert http_status_of(refused.value) == 409
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def test_a_job_cancelled_before_it_was_planned_starts_over_when_retried(pipeline):
    owner = make_user("tara")
    job = Job.objects.create(
        owner=owner,
        plan=plan({"key": "x", "agent": "echo", "queue": "default", "max_attempts": 1, "timeout": 30}),
        status=JobStatus.CANCELLED,
    )
    job_retry_failed(job=job)
    assert job_wait(job.id).status == JobStatus.SUCCEEDED


def test_requeue_resends_a_queued_task_whose_message_was_lost(pipeline):
    owner = make_user("uma")
    now = timezone.now()
    # A job whose task was sent to its queue (sent_at), and whose message never reached Redis.
    job = Job.objects.create(owner=owner, plan={"tasks": []}, status=JobStatus.RUNNING, started_at=now)
    task = Task.objects.create(
        job=job, key="lost", agent="echo", queue="default", status=TaskStatus.QUEUED, attempt=1, queued_at=now,
        sent_at=now,
    )  # fmt: skip
    started = time.monotonic()
    assert job_requeue(job=job) == 1
    assert job_wait(job.id, timeout=30).status == JobStatus.SUCCEEDED
    # Sooner than the reconciler would have re-sent it by itself.
    assert time.monotonic() - started < settings.AGENTBUS_REQUEUE_AFTER
    task.refresh_from_db()
    assert (task.status, task.attempt) == (TaskStatus.SUCCEEDED, 1)


def test_requeue_brings_a_retry_waiting_out_its_backoff_forward(pipeline):
    owner = make_user("vera")
    job = Job.objects.create(owner=owner, plan={"tasks": []}, status=JobStatus.RUNNING, started_at=timezone.now())
    later = timezone.now() + timezone.timedelta(hours=1)
    task = Task.objects.create(job=job, key="t", agent="echo", queue="default", attempt=1, next_attempt_at=later)
    assert job_requeue(job=job) == 1
    # The orchestrator runs the retry now instead of in an hour.
    assert job_wait(job.id, timeout=30).status == JobStatus.SUCCEEDED
    task.refresh_from_db()
    assert (task.status, task.attempt) == (TaskStatus.SUCCEEDED, 2)
