"""LLM agents and the planner against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json

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


def register_llm(staff, name: str, **extra) -> None:
    body = {"name": name, "kind": "llm", "queue": "llm", "system_prompt": "You are terse.", "timeout": 10,
            "max_attempts": 2, "retry_backoff": 0.1, **extra}  # fmt: skip
    response = staff.post("/agents", body, format="json")
    assert response.status_code == 201, response.content


def test_an_llm_agents_answer_lands_in_the_results_with_its_token_usage(
    llm_worker, llm_configured, staff, alice, serve
):
    server = serve(LLM_PORT, lambda n, body: (200, chat_completion("Bonjour", prompt_tokens=31, completion_tokens=4)))
    register_llm(staff, "translator")
    job_id = submit(
        alice,
        {
            "requirements": "greet in French",
            "plan": plan({"key": "t", "agent": "translator", "input": {"prompt": "Say hello"}}),
        },
    )
    assert job_wait(job_id).status == "succeeded"

    results = alice.get(f"/jobs/{job_id}/results").json()
    task = results["tasks"]["t"]
    assert task["output"] == {
        "answer": "Bonjour",
        "model": "scripted-model",
        "usage": {"prompt_tokens": 31, "completion_tokens": 4, "total_tokens": 35},
    }
    assert task["tokens_used"] == 35 and task["usage"]["calls"] == 1
    assert results["tokens_used"] == 35
    assert alice.get(f"/jobs/{job_id}").json()["tokens_used"] == 35

    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "scripted-model"
    messages = request["body"]["messages"]
    assert messages[0] == {"role": "system", "content": "You are terse."}
    assert "greet in French" in messages[1]["content"] and "Say hello" in messages[1]["content"]


def test_a_job_with_requirements_only_is_planned_by_the_llm_into_tasks_that_run(
    llm_worker, llm_configured, alice, serve
):
    planned = {"tasks": [
        {"key": "research", "agent": "echo", "input": {"topic": "tides"}},
        {"key": "outline", "agent": "echo", "depends_on": ["research"]},
        {"key": "write", "agent": "echo", "depends_on": ["outline"], "input": {"words": 300}},
    ]}  # fmt: skip
    answer = f"Here is the plan:\n```json\n{json.dumps(planned)}\n```\nGood luck."
    server = serve(LLM_PORT, lambda n, body: (200, chat_completion(answer, prompt_tokens=100, completion_tokens=50)))
    response = alice.post("/jobs", {"requirements": "Write a short article about tides."}, format="json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]

    job = job_wait(job_id)
    assert job.status == "succeeded", job.error
    assert [t["key"] for t in job.plan["tasks"]] == ["research", "outline", "write"]
    tasks = {t.key: t for t in Task.objects.filter(job_id=job_id)}
    assert set(tasks) == {"_plan", "research", "outline", "write"}
    assert all(t.status == "succeeded" for t in tasks.values())
    assert tasks["write"].output["upstream"]["outline"]["upstream"]["research"]["input"] == {"topic": "tides"}
    assert tasks["_plan"].tokens_used == 150 and job.tokens_used == 150
    # The result holds the plan's final task, not the planner's output.
    assert set(job.result["outputs"]) == {"write"}

    prompt = server.requests[0]["body"]["messages"]
    assert "echo" in prompt[0]["content"] and prompt[1]["content"] == "Write a short article about tides."


def test_an_invalid_plan_from_the_llm_is_retried_with_the_errors_then_fails_the_job_clearly(
    llm_worker, llm_configured, alice, serve
):
    bad = {"tasks": [{"key": "a", "agent": "no-such-agent"}]}
    server = serve(LLM_PORT, lambda n, body: (200, chat_completion(json.dumps(bad))))
    job_id = submit(alice, {"requirements": "Do something impossible."})
    job = job_wait(job_id)
    assert job.status == "failed"
    assert "could not produce a valid plan in 3 tries" in job.error
    assert "unknown agent 'no-such-agent'" in job.error
    assert server.calls == 3  # one attempt of the planner task, three asks
    second = server.requests[1]["body"]["messages"]
    assert second[-2]["role"] == "assistant" and "no-such-agent" in second[-2]["content"]
    assert "plan.tasks[0].agent: unknown agent 'no-such-agent'" in second[-1]["content"]
    assert not Task.objects.filter(job_id=job_id).exclude(key="_plan").exists()


def test_a_plan_fixed_on_the_second_ask_runs(llm_worker, llm_configured, alice, serve):
    answers = ["I think you should just do it.", json.dumps({"tasks": [{"key": "only", "agent": "echo"}]})]
    server = serve(LLM_PORT, lambda n, body: (200, chat_completion(answers[min(n, 2) - 1])))
    job_id = submit(alice, {"requirements": "Echo something."})
    assert job_wait(job_id).status == "succeeded"
    assert server.calls == 2
    assert "no JSON object" in server.requests[1]["body"]["messages"][-1]["content"]
    assert Task.objects.get(job_id=job_id, key="_plan").output["tries"] == 2


def test_without_an_llm_a_job_without_a_plan_is_rejected_saying_so(alice, settings):
    settings.AGENTBUS_LLM_BASE_URL = ""
    response = alice.post("/jobs", {"requirements": "Plan this for me."}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "plan_required" and "plan" in body["fields"]
    assert not Job.objects.exists()


def test_with_an_llm_a_job_needs_requirements_or_a_plan(alice, llm_configured):
    response = alice.post("/jobs", {"requirements": "  "}, format="json")
    assert response.status_code == 400
    assert "requirements" in response.json()["fields"]


def test_a_planned_job_with_plan_review_is_planned_again_with_the_reviewers_feedback(
    llm_worker, llm_configured, alice, serve
):
    from jobs.models import Review
    from tests.conftest import wait_for

    plans = [
        {"tasks": [{"key": "draft", "agent": "echo"}]},
        {"tasks": [{"key": "outline", "agent": "echo"}, {"key": "draft", "agent": "echo", "depends_on": ["outline"]}]},
    ]
    server = serve(LLM_PORT, lambda n, body: (200, chat_completion(json.dumps(plans[min(n, 2) - 1]))))
    job_id = submit(alice, {"requirements": "Write a memo.", "review_plan": True})

    def pending_plan_review():
        return Review.objects.filter(job_id=job_id, kind="plan", status="pending").first()

    first = wait_for(pending_plan_review, message="the plan review")
    assert first.proposed["tasks"][0]["key"] == "draft"
    response = alice.post(
        f"/reviews/{first.id}/decision", {"decision": "reject", "comment": "Outline first."}, format="json"
    )
    assert response.status_code == 200, response.content
    second = wait_for(lambda: (r := pending_plan_review()) and r.pk != first.pk and r, message="the new plan's review")
    assert [t["key"] for t in second.proposed["tasks"]] == ["outline", "draft"]
    assert "Outline first." in server.requests[1]["body"]["messages"][-1]["content"]
    assert alice.post(f"/reviews/{second.id}/decision", {"decision": "approve"}, format="json").status_code == 200
    assert job_wait(job_id).status == "succeeded"
    assert set(Task.objects.filter(job_id=job_id).values_list("key", flat=True)) == {"_plan", "outline", "draft"}
