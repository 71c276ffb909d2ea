"""POST /jobs: validation, idempotency, and that nothing is written for a rejected job."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from jobs.models import Job, JobEvent
from tests.conftest import plan

pytestmark = pytest.mark.django_db

ONE_TASK = plan({"key": "a", "agent": "echo"})


def post_job(client, body, **headers):
    return client.post("/jobs", body, format="json", **headers)


def assert_rejected(response, field: str, fragment: str, status: int = 400):
    assert response.status_code == status, response.content
    body = response.json()
    assert field in body["fields"], body
    assert any(fragment in message for message in body["fields"][field]), body
    assert Job.objects.count() == 0 and JobEvent.objects.count() == 0


def test_a_valid_job_is_accepted_with_201_and_its_roots_dispatched_within_the_submission(alice):
    response = post_job(alice, {"requirements": "say hi", "plan": ONE_TASK, "priority": 3, "metadata": {"team": "x"}})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "running"
    assert response["Location"] == f"/jobs/{body['id']}"
    job = Job.objects.get(pk=body["id"])
    assert (job.requirements, job.priority, job.metadata) == ("say hi", 3, {"team": "x"})
    assert job.plan["tasks"][0]["queue"] == "default"
    assert list(job.events.values_list("seq", "type", "status")) == [
        (1, "job.status", "submitted"),
        (2, "job.status", "running"),
        (3, "task.status", "queued"),
    ]
    assert body["last_seq"] == 3
    assert job.tasks.get().status == "queued" and job.advanced_seq == 3  # settled: nothing for the orchestrator


def test_a_trailing_slash_works_too(alice):
    assert alice.post("/jobs/", {"plan": ONE_TASK}, format="json").status_code == 201


def test_an_unknown_agent_is_rejected(alice):
    response = post_job(alice, {"plan": plan({"key": "a", "agent": "nope"})})
    assert_rejected(response, "plan.tasks[0].agent", "unknown agent 'nope'")
    assert response.json()["error"] == "invalid_plan"


def test_duplicate_keys_are_rejected(alice):
    response = post_job(alice, {"plan": plan({"key": "a", "agent": "echo"}, {"key": "a", "agent": "echo"})})
    assert_rejected(response, "plan.tasks[1].key", "duplicate key 'a'")


def test_a_missing_dependency_is_rejected(alice):
    response = post_job(alice, {"plan": plan({"key": "a", "agent": "echo", "depends_on": ["ghost"]})})
    assert_rejected(response, "plan.tasks[0].depends_on", "unknown task key 'ghost'")


def test_a_self_dependency_is_rejected(alice):
    response = post_job(alice, {"plan": plan({"key": "a", "agent": "echo", "depends_on": ["a"]})})
    assert_rejected(response, "plan.tasks[0].depends_on", "cannot depend on itself")


def test_a_cycle_is_rejected(alice):
    body = {
        "plan": plan(
            {"key": "a", "agent": "echo", "depends_on": ["c"]},
            {"key": "b", "agent": "echo", "depends_on": ["a"]},
            {"key": "c", "agent": "echo", "depends_on": ["b"]},
            {"key": "free", "agent": "echo"},
        )
    }
    assert_rejected(post_job(alice, body), "plan.tasks", "cycle")


@override_settings(AGENTBUS_MAX_PLAN_TASKS=3)
def test_too_many_tasks_are_rejected(alice):
    body = {"plan": plan(*({"key": f"t{i}", "agent": "echo"} for i in range(4)))}
    assert_rejected(post_job(alice, body), "plan.tasks", "at most 3")


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"requirements": 42, "plan": ONE_TASK}, "requirements", "valid string"),
        ({"plan": ONE_TASK, "priority": "high"}, "priority", "valid integer"),
        ({"plan": ONE_TASK, "priority": 1000}, "priority", "less than or equal to 100"),
        ({"plan": ONE_TASK, "review_plan": "yes"}, "review_plan", "valid boolean"),
        ({"plan": ONE_TASK, "metadata": ["not", "an", "object"]}, "metadata", "dictionary"),
        ({"plan": []}, "plan", "must be an object"),
        ({"plan": {"tasks": []}}, "plan.tasks", "may not be empty"),
        ({"plan": {"tasks": "a,b"}}, "plan.tasks", "list"),
        ({"plan": plan({"key": 1, "agent": "echo"})}, "plan.tasks[0].key", "valid string"),
        ({"plan": plan({"key": "a b", "agent": "echo"})}, "plan.tasks[0].key", "A-Z a-z 0-9"),
        ({"plan": plan({"agent": "echo"})}, "plan.tasks[0].key", "required"),
        ({"plan": plan({"key": "a", "agent": "echo", "input": "text"})}, "plan.tasks[0].input", "dictionary"),
        ({"plan": plan({"key": "a", "agent": "echo", "depends_on": "b"})}, "plan.tasks[0].depends_on", "list"),
        (
            {"plan": plan({"key": "a", "agent": "echo", "max_attempts": 0})},
            "plan.tasks[0].max_attempts",
            "greater than or equal to 1",
        ),
        ({"plan": plan({"key": "a", "agent": "echo", "max_attempts": 1000})}, "plan.tasks[0].max_attempts", "at most"),
        ({"plan": plan({"key": "a", "agent": "echo", "timeout": "60"})}, "plan.tasks[0].timeout", "valid integer"),
        (
            {"plan": plan({"key": "a", "agent": "echo", "review": "sometimes"})},
            "plan.tasks[0].review",
            "not a valid choice",
        ),
    ],
)
def test_wrong_types_are_rejected_naming_the_field(alice, body, field, fragment):
    assert_rejected(post_job(alice, body), field, fragment)


def test_a_job_without_a_plan_is_rejected_saying_a_plan_is_required(alice):
    response = post_job(alice, {"requirements": "write a poem"})
    assert_rejected(response, "plan", "required")
    assert response.json()["error"] == "plan_required"


def test_malformed_json_is_a_400_with_a_json_body(alice):
    response = alice.generic("POST", "/jobs", '{"plan": {', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"
    assert "JSON parse error" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_a_body_that_is_not_an_object_is_rejected(alice):
    response = alice.generic("POST", "/jobs", "[1, 2]", content_type="application/json")
    assert_rejected(response, "body", "JSON object")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_an_oversized_body_is_a_413(alice):
    body = {"plan": plan({"key": "a", "agent": "echo", "input": {"blob": "x" * 5000}})}
    response = alice.generic("POST", "/jobs", json.dumps(body), content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert Job.objects.count() == 0


def test_an_unauthenticated_request_is_a_401_with_a_json_body(client):
    response = client.post("/jobs", {"plan": ONE_TASK}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_a_bearer_token_works_like_a_token(alice):
    raw = alice._credentials["HTTP_AUTHORIZATION"].split()[1]
    alice.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert alice.get("/jobs").status_code == 200
    alice.credentials(HTTP_AUTHORIZATION="Bearer wrong")
    assert alice.get("/jobs").status_code == 401


class TestIdempotency:
    def test_a_replay_with_the_same_key_and_body_returns_the_same_job(self, alice):
        first = post_job(alice, {"plan": ONE_TASK}, HTTP_IDEMPOTENCY_KEY="k-1")
        again = post_job(alice, {"plan": ONE_TASK}, HTTP_IDEMPOTENCY_KEY="k-1")
        assert first.status_code == 201
        assert again.status_code == 200
        assert again["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert Job.objects.count() == 1

    def test_the_same_key_with_a_different_body_is_a_422(self, alice):
        post_job(alice, {"plan": ONE_TASK}, HTTP_IDEMPOTENCY_KEY="k-2")
        response = post_job(alice, {"plan": ONE_TASK, "priority": 5}, HTTP_IDEMPOTENCY_KEY="k-2")
        assert response.status_code == 422
        assert response.json()["error"] == "idempotency_key_reused"
        assert Job.objects.count() == 1

    def test_keys_are_per_user(self, alice, bob):
        a = post_job(alice, {"plan": ONE_TASK}, HTTP_IDEMPOTENCY_KEY="shared")
        b = post_job(bob, {"plan": ONE_TASK}, HTTP_IDEMPOTENCY_KEY="shared")
        assert a.status_code == b.status_code == 201
        assert a.json()["id"] != b.json()["id"]

    def test_an_overlong_key_is_rejected(self, alice):
        response = post_job(alice, {"plan": ONE_TASK}, HTTP_IDEMPOTENCY_KEY="k" * 300)
        assert_rejected(response, "Idempotency-Key", "1 to 255")
