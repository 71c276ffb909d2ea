"""The schedules API: create with cron or interval, validation in the project's error
shape, another user's schedule a 404, pause, resume, run now, delete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from schedules.models import Schedule, ScheduleRun
from schedules.services import schedules_fire_due, tick_key
from tests.conftest import plan

pytestmark = pytest.mark.django_db

JOB = {"requirements": "nightly report", "plan": plan({"key": "a", "agent": "echo", "input": {"n": 1}})}


def create(client, **body):
    return client.post("/schedules", {"job": JOB, **body}, format="json")


def test_a_cron_schedule_in_a_time_zone_has_its_next_ticks_in_that_zone(alice):
    response = create(alice, name="9am Paris", cron="0 9 * * *", timezone="Europe/Paris")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["cron"] == "0 9 * * *" and body["interval_seconds"] is None
    upcoming = [datetime.fromisoformat(t) for t in body["upcoming"]]
    assert len(upcoming) == 3
    from zoneinfo import ZoneInfo

    assert all(t.astimezone(ZoneInfo("Europe/Paris")).hour == 9 for t in upcoming)
    assert upcoming[1] - upcoming[0] in (timedelta(days=1), timedelta(hours=23), timedelta(hours=25))
    assert datetime.fromisoformat(body["next_run_at"]) == upcoming[0] > timezone.now()


def test_an_interval_schedule_ticks_on_a_grid_from_its_creation(alice):
    body = create(alice, interval_seconds=90).json()
    created = datetime.fromisoformat(body["created_at"])
    ticks = [datetime.fromisoformat(t) for t in body["upcoming"]]
    assert [round((t - created).total_seconds()) for t in ticks] == [90, 180, 270]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),  # valid syntax, never matches
        ({"cron": "* * * * *", "timezone": "America"}, "timezone"),  # a folder of zones
        ({"cron": "* * * * *", "interval_seconds": 60}, "cron"),
        ({}, "cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": 60, "overlap": "sometimes"}, "overlap"),
        ({"interval_seconds": 60, "catchup": "all"}, "catchup"),
        ({"interval_seconds": 60, "job": {"plan": plan({"key": "a", "agent": "nope"})}}, "job.plan.tasks[0].agent"),
        ({"interval_seconds": 60, "job": {"requirements": "no plan"}}, "job.plan"),
        ({"interval_seconds": 60, "job": {"plan": JOB["plan"], "priority": "high"}}, "job.priority"),
        ({"interval_seconds": 60, "job": "not an object"}, "job.non_field_errors"),
    ],
)
def test_a_bad_schedule_is_a_400_naming_the_field(alice, body, field):
    payload = {"job": JOB, **body}
    response = alice.post("/schedules", payload, format="json")
    assert response.status_code == 400, response.content
    fields = response.json()["fields"]
    assert any(k.startswith(field.replace(".non_field_errors", "")) for k in fields), fields
    assert not Schedule.objects.exists()


def test_another_users_schedule_is_a_404_everywhere(alice, bob):
    schedule_id = create(alice, interval_seconds=60).json()["id"]
    for method, path in [
        ("get", ""), ("patch", ""), ("delete", ""), ("post", "/pause"), ("post", "/resume"), ("post", "/trigger"),
    ]:  # fmt: skip
        response = getattr(bob, method)(f"/schedules/{schedule_id}{path}", {}, format="json")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"
    assert bob.get("/schedules").json()["count"] == 0
    assert alice.get("/schedules").json()["count"] == 1
    assert alice.get(f"/schedules/{uuid.uuid4()}").status_code == 404


def test_pause_stops_the_ticks_and_resume_starts_from_the_next_one(alice):
    schedule_id = create(alice, interval_seconds=60).json()["id"]
    paused = alice.post(f"/schedules/{schedule_id}/pause").json()
    assert paused["paused"] is True and paused["next_run_at"] is None and paused["upcoming"] == []
    assert schedules_fire_due(now=timezone.now() + timedelta(hours=1)) == 0
    resumed = alice.post(f"/schedules/{schedule_id}/resume").json()
    assert resumed["paused"] is False
    assert datetime.fromisoformat(resumed["next_run_at"]) > timezone.now()


def test_patch_changes_the_timing_and_checks_a_new_template(alice):
    schedule_id = create(alice, interval_seconds=60).json()["id"]
    response = alice.patch(f"/schedules/{schedule_id}", {"cron": "*/5 * * * *"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["cron"] == "*/5 * * * *" and response.json()["interval_seconds"] is None
    assert datetime.fromisoformat(response.json()["next_run_at"]).minute % 5 == 0
    bad = alice.patch(
        f"/schedules/{schedule_id}", {"job": {"plan": plan({"key": "a", "agent": "nope"})}}, format="json"
    )
    assert bad.status_code == 400 and "job.plan.tasks[0].agent" in bad.json()["fields"]
    assert Schedule.objects.get(pk=schedule_id).template["plan"]["tasks"][0]["agent"] == "echo"


def test_run_now_submits_one_job_with_the_template(alice):
    schedule_id = create(alice, interval_seconds=3600).json()["id"]
    response = alice.post(f"/schedules/{schedule_id}/trigger")
    assert response.status_code == 201, response.content
    run = response.json()
    assert run["action"] == "started" and run["manual"] is True
    job = Job.objects.get(pk=run["job"])
    assert job.requirements == "nightly report"
    assert job.idempotency_key == tick_key(schedule_id, datetime.fromisoformat(run["tick"]))
    detail = alice.get(f"/schedules/{schedule_id}").json()
    assert [r["job"] for r in detail["runs"]] == [run["job"]]


def test_delete_removes_the_schedule_and_keeps_its_jobs(alice):
    schedule_id = create(alice, interval_seconds=3600).json()["id"]
    job_id = alice.post(f"/schedules/{schedule_id}/trigger").json()["job"]
    assert alice.delete(f"/schedules/{schedule_id}").status_code == 204
    assert not Schedule.objects.exists() and not ScheduleRun.objects.exists()
    assert Job.objects.filter(pk=job_id).exists()


def test_the_dashboard_lists_schedules_with_their_next_runs(alice, client):
    create(alice, name="hourly digest", cron="0 * * * *")
    client.force_login(alice.user)
    page = client.get("/app/schedules")
    assert page.status_code == 200
    html = page.content.decode()
    assert "hourly digest" in html and "0 * * * * (UTC)" in html
    nxt = Schedule.objects.get().next_run_at.astimezone(UTC)
    assert nxt.isoformat() in html
