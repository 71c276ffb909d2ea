"""Per-job budgets: a job that would exceed its tasks, tokens or deadline stops, saying why."""

from __future__ import annotations

import pytest

from jobs.models import Job, Task
from tests.conftest import job_wait, plan
from tests.workers.conftest import LLM_PORT
from tests.workers.servers import chat_completion

pytestmark = pytest.mark.django_db(transaction=True)


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_job_over_its_token_budget_stops_with_the_reason(llm_worker, llm_configured, staff, alice, serve):
    server = serve(LLM_PORT, lambda n, body: (200, chat_completion("ok", prompt_tokens=25, completion_tokens=5)))
    response = staff.post("/agents", {"name": "chatty", "kind": "llm", "queue": "llm", "timeout": 10}, format="json")
    assert response.status_code == 201, response.content
    body = {
        "plan": plan(
            {"key": "one", "agent": "chatty"},
            {"key": "two", "agent": "chatty", "depends_on": ["one"]},
            {"key": "three", "agent": "chatty", "depends_on": ["two"]},
        ),
        "budget": {"max_tokens": 45},
    }
    job_id = submit(alice, body)
    job = job_wait(job_id)
    assert job.status == "failed"
    assert job.error == "budget: the job used 60 LLM tokens, over its max_tokens of 45"
    statuses = dict(Task.objects.filter(job_id=job_id).values_list("key", "status"))
    # The job stops the moment its usage crosses the budget: "two" may be stopped before
    # its worker records its output; "three" never runs.
    assert statuses["one"] == "succeeded" and statuses["two"] in ("succeeded", "cancelled")
    assert statuses["three"] == "cancelled"
    # The second call was capped at what was left of the budget.
    assert server.requests[1]["body"]["max_tokens"] == 15
    assert server.calls == 2


def test_a_job_past_its_deadline_stops_and_its_running_task_is_stopped(pipeline, alice):
    job_id = submit(
        alice,
        {"plan": plan({"key": "slow", "agent": "sleepy", "input": {"seconds": 30}}), "budget": {"deadline_seconds": 2}},
    )
    job = job_wait(job_id, timeout=15)
    assert job.status == "failed"
    assert job.error.startswith("budget: the job's deadline")
    assert (job.finished_at - job.created_at).total_seconds() < 10
    task = Task.objects.get(job_id=job_id)
    assert task.status == "cancelled" and task.output is None


def test_a_plan_over_max_tasks_is_refused_at_submission(alice):
    body = {"plan": plan({"key": "a", "agent": "echo"}, {"key": "b", "agent": "echo"}), "budget": {"max_tasks": 1}}
    response = alice.post("/jobs", body, format="json")
    assert response.status_code == 400
    assert "budget.max_tasks" in response.json()["fields"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("budget", [{"max_tasks": 0}, {"max_tokens": "many"}, {"deadline_seconds": -1}, "soon"])
def test_a_bad_budget_is_a_400_naming_the_field(alice, budget):
    response = alice.post("/jobs", {"plan": plan({"key": "a", "agent": "echo"}), "budget": budget}, format="json")
    assert response.status_code == 400
    assert any(path.startswith("budget") for path in response.json()["fields"])


def test_spawning_past_max_tasks_fails_the_job_with_the_budget_reason(pipeline, alice):
    job_id = submit(
        alice, {"plan": plan({"key": "root", "agent": "spawner", "input": {"count": 3}}), "budget": {"max_tasks": 3}}
    )
    job = job_wait(job_id)
    assert job.status == "failed"
    assert "budget: spawning 3 task(s) would make 4 tasks, over the job's max_tasks of 3" in job.error
    assert list(Task.objects.filter(job_id=job_id).values_list("key", flat=True)) == ["root"]
