"""Authorization everywhere: every route that names an object answers another user's
request with a 404 (never a 403, never a change), staff-only operations are refused to
users, and read-only fields in a request body are ignored.

The routes are read from the URL configuration, so an endpoint added later is swept
too without anyone remembering to list it here."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from jobs.lifecycle import job_advance
from jobs.models import Job, JobEvent
from tests.conftest import client_for, make_user, plan

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def object_routes() -> list[str]:
    """Every URL regex with a named group (an object id), admin and RQ dashboards aside."""
    found = []

    def walk(resolver: URLResolver, prefix: str) -> None:
        for entry in resolver.url_patterns:
            pattern = prefix + str(entry.pattern).lstrip("^")
            if isinstance(entry, URLResolver):
                if not pattern.startswith("admin/"):
                    walk(entry, pattern)
            elif isinstance(entry, URLPattern) and "(?P<" in pattern:
                found.append(pattern)

    walk(get_resolver(), "")
    return found


def fill(pattern: str, ids: dict) -> str:
    path = _GROUP.sub(lambda m: str(ids.get(m.group(1), uuid.uuid4())), pattern)
    return "/" + path.rstrip("$").replace("/?", "")


@pytest.fixture
def alices_objects(alice):
    """A job of alice's waiting at a plan review (so a review of hers exists too), and a
    memory of hers if the memory API is there."""
    body = {"requirements": "r", "review_plan": True, "plan": plan({"key": "a", "agent": "echo"})}
    job_id = alice.post("/jobs", body, format="json").json()["id"]
    job_advance(job_id)
    ids = {"job_id": job_id}
    from jobs.models import Review

    review = Review.objects.filter(job_id=job_id).first()
    if review is not None:
        ids["review_id"] = review.id
    stored = alice.post("/memory/store", {"text": "alice's secret"}, format="json")
    if stored.status_code == 201:
        ids["memory_id"] = stored.json()["id"]
    return ids


def test_the_sweep_covers_jobs_reviews_and_memory():
    routes = " ".join(object_routes())
    assert "job_id" in routes and "review_id" in routes and "memory_id" in routes


def test_every_object_route_answers_another_user_with_404_and_changes_nothing(alice, alices_objects):
    assert {"job_id", "review_id", "memory_id"} <= set(alices_objects), alices_objects
    bob = make_user("bob")
    api = client_for(bob)
    browser = APIClient()
    browser.force_login(bob)
    job_before = Job.objects.values().get(pk=alices_objects["job_id"])
    events_before = JobEvent.objects.filter(job_id=alices_objects["job_id"]).count()

    answers = {}
    for pattern in object_routes():
        path = fill(pattern, alices_objects)
        client = browser if path.startswith("/app/") else api
        for method in METHODS:
            response = getattr(client, method)(path, {}, format="json")
            answers[(method, path)] = response.status_code
    wrong = {k: v for k, v in answers.items() if v not in (404, 405)}
    assert not wrong, wrong
    assert any(v == 404 for v in answers.values())

    assert Job.objects.values().get(pk=alices_objects["job_id"]) == job_before
    assert JobEvent.objects.filter(job_id=alices_objects["job_id"]).count() == events_before
    assert alice.get(f"/memory/{alices_objects['memory_id']}").status_code == 200


def test_staff_see_others_objects(alices_objects):
    staff = client_for(make_user("root", staff=True))
    assert staff.get(f"/jobs/{alices_objects['job_id']}").status_code == 200


def test_staff_only_operations_are_refused_to_users(alice):
    assert alice.get("/system").status_code == 403
    agent = {"name": "sneaky", "kind": "http", "url": "http://127.0.0.1:9/"}
    assert alice.post("/agents", agent, format="json").status_code in (403, 405)
    browser = APIClient()
    browser.force_login(alice.user)
    for path in ("/admin/", "/admin/rq/", "/admin/jobs/job/"):
        response = browser.get(path)
        assert response.status_code == 302 and "/login/" in response["Location"], path


def test_read_only_fields_in_a_job_submission_are_ignored(alice):
    bob = make_user("bob")
    forged_id = str(uuid.uuid4())
    body = {
        "plan": plan({"key": "a", "agent": "echo"}),
        "id": forged_id,
        "owner": bob.username,
        "status": "succeeded",
        "result": {"outputs": {"a": "forged"}},
        "last_seq": 99,
        "error": "",
    }
    response = alice.post("/jobs", body, format="json")
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert str(job.id) != forged_id
    # Submitted, started and its task dispatched: three events of its own, none forged.
    assert (job.owner_id, job.status, job.result, job.last_seq) == (alice.user.id, "running", None, 3)


def test_anonymous_callers_get_401_not_data():
    anonymous = APIClient()
    for path in ("/jobs", f"/jobs/{uuid.uuid4()}", "/reviews", "/memory/search?q=x", "/agents"):
        assert anonymous.get(path).status_code == 401, path
