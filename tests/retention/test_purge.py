"""Retention, with jobs run by real orchestrator and worker processes and the purge run as
`manage.py purge`: finished jobs past their age lose their events, outputs and artifacts
(the API and the dashboard answer 410 with what was kept); active jobs, and the jobs of a
user whose policy keeps them, are untouched; expired memories leave PostgreSQL and Chroma."""

from __future__ import annotations

import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from jobs.models import Artifact, Job, JobEvent, Task
from retention.models import RetentionPolicy
from tests.conftest import job_wait, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = plan(
    {"key": "a", "agent": "echo", "input": {"text": "secret input"}}, {"key": "b", "agent": "echo", "depends_on": ["a"]}
)


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def purge(processes, *args: str) -> str:
    proc = processes.start("purge", *args, name="purge")
    assert proc.wait(60) == 0, processes.output(proc)
    return processes.output(proc)


def event_bytes() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM jobs_jobevent t")
        return cursor.fetchone()


def test_a_purge_removes_finished_jobs_details_and_leaves_active_and_kept_jobs_alone(pipeline, alice, bob, client):
    finished = [submit(alice, {"plan": ECHO}) for _ in range(3)]
    for job_id in finished:
        job_wait(job_id)
    # An artifact of a finished job, stored as ctx.artifact() stores one.
    task = Task.objects.filter(job_id=finished[0]).first()
    artifact = Artifact(job_id=finished[0], task=task, name="report.txt", size=5)
    artifact.file.save("report.txt", ContentFile(b"hello"), save=True)
    artifact_file = artifact.file.name
    # Active: a task on a queue no worker serves stays queued.
    active = submit(alice, {"plan": plan({"key": "q", "agent": "unserved_echo", "input": {"keep": True}})})
    wait_for(lambda: Task.objects.filter(job_id=active, status="queued").exists(), message="the active job queued")
    # Bob's policy keeps his jobs for ever.
    RetentionPolicy.objects.create(user=bob.user, job_days=0)
    bobs = submit(bob, {"plan": ECHO})
    job_wait(bobs)
    active_events = JobEvent.objects.filter(job_id=active).count()
    rows_before, bytes_before = event_bytes()
    time.sleep(0.2)

    output = purge(pipeline.processes, "--days", "0.000001")  # ~0.09 s
    assert "purged 3 job(s)" in output

    for job_id in finished:
        job = Job.objects.get(pk=job_id)
        assert job.purged_at is not None and job.status == "succeeded" and job.result is None
        assert not JobEvent.objects.filter(job_id=job_id).exists()
        assert all(t.output is None and t.input == {} for t in Task.objects.filter(job_id=job_id))
    assert not Artifact.objects.filter(job_id=finished[0]).exists()
    assert not default_storage.exists(artifact_file)
    # Untouched: the active job and bob's.
    assert Job.objects.get(pk=active).purged_at is None
    assert JobEvent.objects.filter(job_id=active).count() == active_events
    assert Task.objects.get(job_id=active).input == {"keep": True}
    assert Job.objects.get(pk=bobs).purged_at is None
    assert JobEvent.objects.filter(job_id=bobs).exists()
    rows_after, bytes_after = event_bytes()
    assert rows_after < rows_before and bytes_after < bytes_before

    # The API and the dashboard answer 410 with what was kept.
    for path in ("", "/results", "/events"):
        response = alice.get(f"/jobs/{finished[0]}{path}")
        assert response.status_code == 410, (path, response.content)
        body = response.json()
        assert body["error"] == "job_purged"
        assert body["kept"]["status"] == "succeeded"
        assert [(t["key"], t["status"]) for t in body["kept"]["tasks"]] == [("a", "succeeded"), ("b", "succeeded")]
    assert alice.get(f"/jobs/{active}").status_code == 200
    assert bob.get(f"/jobs/{finished[0]}").status_code == 404  # still someone else's
    client.force_login(alice.user)
    page = client.get(f"/app/jobs/{finished[0]}")
    assert page.status_code == 410 and b"purged" in page.content

    # Purging again finds nothing.
    assert "purged 0 job(s)" in purge(pipeline.processes, "--days", "0.000001")


def test_expired_memories_are_purged_from_postgresql_and_chroma(chroma_server, alice, processes):
    from memory.chroma import chroma_ids, chroma_reset
    from memory.models import Memory

    chroma_reset()
    expiring = alice.post("/memory/store", {"text": "a passing thought", "ttl": 1}, format="json").json()["id"]
    kept = alice.post("/memory/store", {"text": "a lasting fact"}, format="json").json()["id"]
    assert chroma_ids(ids=[expiring, kept]) == {expiring, kept}
    time.sleep(1.5)

    output = purge(processes)
    assert "1 expired memories" in output
    assert not Memory.objects.filter(pk=expiring).exists()
    assert Memory.objects.filter(pk=kept).exists()
    assert chroma_ids(ids=[expiring, kept]) == {kept}
