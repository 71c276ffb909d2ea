"""Request limits: an oversized body is a 413 in the API's error shape (through DRF and
outside it), and over-long strings and plans are 400s naming the field."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _too_big() -> str:
    return '{"requirements": "' + "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + '"}'


@pytest.mark.parametrize("path", ["/jobs", "/auth/token", "/memory/store"])
def test_an_oversized_body_is_a_413_in_the_error_shape(alice, path):
    response = alice.post(path, _too_big(), content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


def test_an_oversized_form_outside_the_api_is_a_413_too():
    response = APIClient().post("/accounts/login/", {"username": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


def test_over_long_requirements_are_a_400_naming_the_field(alice):
    body = {
        "requirements": "x" * (settings.AGENTBUS_MAX_REQUIREMENTS_CHARS + 1),
        "plan": {"tasks": []},
    }
    response = alice.post("/jobs", body, format="json")
    assert response.status_code == 400
    assert "requirements" in response.json()["fields"]


def test_a_plan_with_too_many_tasks_is_a_400_naming_the_plan(alice):
    tasks = [{"key": f"t{i}", "agent": "echo"} for i in range(settings.AGENTBUS_MAX_PLAN_TASKS + 1)]
    response = alice.post("/jobs", {"plan": {"tasks": tasks}}, format="json")
    assert response.status_code == 400
    assert "plan.tasks" in response.json()["fields"]


def test_an_over_long_task_key_and_oversized_task_input_are_400s(alice):
    plan = {"tasks": [{"key": "k" * 101, "agent": "echo", "input": {"blob": "x" * (300 * 1024)}}]}
    response = alice.post("/jobs", {"plan": plan}, format="json")
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert "plan.tasks[0].key" in fields and "plan.tasks[0].input" in fields


def test_nothing_is_written_for_a_refused_job(alice):
    from jobs.models import Job

    alice.post("/jobs", _too_big(), content_type="application/json")
    alice.post("/jobs", {"plan": {"tasks": [{"key": "a", "agent": "nope"}]}}, format="json")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        '{"plan": {"tasks": [{"key": "a", "agent": "echo"}]}, "metadata": {"k": "nul \\u0000 inside"}}',
        '{"plan": {"tasks": [{"key": "a", "agent": "echo", "input": {"\\ud800": 1}}]}}',
    ],
    ids=["nul-in-a-value", "lone-surrogate-in-a-key"],
)
def test_json_that_postgresql_cannot_store_is_a_400_not_a_500(alice, body):
    from jobs.models import Job

    response = alice.post("/jobs", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"
    assert Job.objects.count() == 0
