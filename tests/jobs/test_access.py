"""Reading and acting on jobs: owners see theirs, others get 404, staff see all."""

from __future__ import annotations

import uuid

import pytest

from jobs.models import Job
from tests.conftest import client_for, make_user, plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_job(alice):
    return alice.post("/jobs", {"plan": plan({"key": "a", "agent": "echo"})}, format="json").json()["id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/jobs/{id}"),
        ("get", "/jobs/{id}/results"),
        ("get", "/jobs/{id}/events"),
        ("post", "/jobs/{id}/cancel"),
    ],
)
def test_another_users_job_answers_404_on_every_endpoint(bob, alices_job, method, path):
    response = getattr(bob, method)(path.format(id=alices_job))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert Job.objects.get(pk=alices_job).status == "running"  # untouched: not cancelled


def test_an_unknown_job_is_a_json_404(alice):
    assert alice.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    response = alice.get("/jobs/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_the_job_list_shows_only_the_callers_jobs_newest_first(alice, bob, alices_job):
    newer = alice.post("/jobs", {"plan": plan({"key": "b", "agent": "echo"})}, format="json").json()["id"]
    bob.post("/jobs", {"plan": plan({"key": "c", "agent": "echo"})}, format="json")
    body = alice.get("/jobs").json()
    assert body["count"] == 2
    assert [j["id"] for j in body["results"]] == [newer, alices_job]


def test_the_job_list_filters_by_status_and_rejects_an_unknown_status(alice, alices_job):
    assert alice.get("/jobs?status=running").json()["count"] == 1
    assert alice.get("/jobs?status=submitted").json()["count"] == 0
    assert alice.get("/jobs?status=succeeded").json()["count"] == 0
    response = alice.get("/jobs?status=bogus")
    assert response.status_code == 400
    assert "status" in response.json()["fields"]


def test_the_job_list_is_paginated(alice):
    for i in range(3):
        alice.post("/jobs", {"plan": plan({"key": f"t{i}", "agent": "echo"})}, format="json")
    page = alice.get("/jobs?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert len(alice.get("/jobs?page_size=2&page=2").json()["results"]) == 1
    assert alice.get("/jobs?page=9").status_code == 404


def test_staff_see_every_job(alices_job):
    staff = client_for(make_user("operator", staff=True))
    assert staff.get(f"/jobs/{alices_job}").status_code == 200


def test_results_are_a_409_until_the_job_has_finished(alice, alices_job):
    response = alice.get(f"/jobs/{alices_job}/results")
    assert response.status_code == 409
    assert response.json()["error"] == "job_not_finished"


def test_the_events_endpoint_validates_after(alice, alices_job):
    response = alice.get(f"/jobs/{alices_job}/events?after=-1")
    assert response.status_code == 400
    assert "after" in response.json()["fields"]
    last = Job.objects.get(pk=alices_job).last_seq
    assert alice.get(f"/jobs/{alices_job}/events?after={last}").json()["events"] == []


def test_cancelling_a_job_before_a_worker_runs_it_cancels_it(alice, alices_job):
    response = alice.post(f"/jobs/{alices_job}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert alice.post(f"/jobs/{alices_job}/cancel").status_code == 409


def test_a_token_is_issued_for_a_username_and_password(client):
    make_user("carol")
    response = client.post(
        "/auth/token", {"username": "carol", "password": "pw-carol"}, content_type="application/json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    from accounts.models import ApiToken

    stored = ApiToken.objects.get(user__username="carol")
    assert token not in (stored.digest, stored.prefix) and len(stored.digest) == 64
    assert client.get("/jobs", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_a_wrong_password_gets_no_token(client):
    make_user("dave")
    response = client.post("/auth/token", {"username": "dave", "password": "nope"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_credentials"
    response = client.post("/auth/token", {"username": "dave"}, content_type="application/json")
    assert response.status_code == 400 and "password" in response.json()["fields"]
