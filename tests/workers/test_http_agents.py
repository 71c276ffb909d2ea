"""HTTP agents against a real endpoint on 127.0.0.1: signed requests, retries of 5xx,
no retry of 4xx, and the circuit breaker."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from jobs.models import JobEvent, Task
from tests.conftest import job_wait, plan, wait_for
from tests.workers.conftest import AGENT_PORT

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3cret-for-tests"


def register(staff, name: str, **extra) -> dict:
    body = {"name": name, "kind": "http", "url": f"http://127.0.0.1:{AGENT_PORT}/run", "secret": SECRET,
            "timeout": 5, "max_attempts": 3, "retry_backoff": 0.1, **extra}  # fmt: skip
    response = staff.post("/agents", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def signature_ok(request: dict) -> bool:
    timestamp = request["headers"]["X-Agentbus-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request["raw"], hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) < 60
    return fresh and request["headers"]["X-Agentbus-Signature"] == f"sha256={expected}"


def test_an_http_agent_failing_twice_with_503_is_called_three_times_signed_with_upstream_outputs(
    pipeline, staff, alice, serve
):
    server = serve(
        AGENT_PORT, lambda n, body: (503, {"error": "busy"}) if n <= 2 else (200, {"output": {"seen": body["input"]}})
    )
    register(staff, "summarize-http")
    body = {
        "requirements": "summarize",
        "plan": plan(
            {"key": "fetch", "agent": "echo", "input": {"url": "doc"}},
            {"key": "summarize", "agent": "summarize-http", "input": {"style": "short"}, "depends_on": ["fetch"]},
        ),
    }
    job_id = submit(alice, body)
    assert job_wait(job_id).status == "succeeded"

    assert server.calls == 3
    assert all(signature_ok(r) for r in server.requests)
    first = server.requests[0]["body"]
    assert first["input"] == {"style": "short"}
    assert first["upstream"] == {"fetch": {"input": {"url": "doc"}, "upstream": {}}}
    assert first["job"] == {"id": job_id, "requirements": "summarize"}
    assert [r["body"]["task"]["attempt"] for r in server.requests] == [1, 2, 3]
    task = Task.objects.get(job_id=job_id, key="summarize")
    assert (task.status, task.attempt, task.output) == ("succeeded", 3, {"seen": {"style": "short"}})


def test_a_4xx_answer_fails_the_task_without_a_retry(pipeline, staff, alice, serve):
    server = serve(AGENT_PORT, lambda n, body: (422, {"error": "cannot summarize an empty text"}))
    register(staff, "picky-http")
    job_id = submit(alice, {"plan": plan({"key": "p", "agent": "picky-http"})})
    job = job_wait(job_id)
    assert job.status == "failed"
    assert server.calls == 1
    task = Task.objects.get(job_id=job_id)
    assert (task.status, task.attempt) == ("failed", 1)
    assert "HTTP 422" in task.error and "cannot summarize" in task.error


def test_a_tampered_request_is_refused_by_a_receiver_checking_the_signature():
    from agents.http import http_signature, http_signature_valid

    body = b'{"input":{}}'
    now = str(int(time.time()))
    good = http_signature(SECRET, now, body)
    assert http_signature_valid(SECRET, now, good, body)
    assert not http_signature_valid(SECRET, now, good, b'{"input":{"x":1}}')
    assert not http_signature_valid("other-secret", now, good, body)
    old = str(int(time.time()) - 3600)
    assert not http_signature_valid(SECRET, old, http_signature(SECRET, old, body), body)


def test_an_open_circuit_makes_tasks_wait_without_spending_attempts_and_shows_in_get_agents(
    pipeline, staff, alice, serve
):
    # Two 503s open the circuit (fail_max 2); the next attempt waits out the reset
    # timeout instead of failing, then its trial call succeeds.
    server = serve(AGENT_PORT, lambda n, body: (503, {}) if n <= 2 else (200, {"output": "recovered"}))
    register(staff, "fragile-http", breaker_fail_max=2, breaker_reset_timeout=4, max_attempts=3)
    job_id = submit(alice, {"plan": plan({"key": "f", "agent": "fragile-http"})})

    def circuit():
        agents = {a["name"]: a for a in alice.get("/agents").json()["agents"]}
        return agents["fragile-http"]

    open_agent = wait_for(lambda: (a := circuit())["circuit"]["state"] == "open" and a, timeout=15, message="open")
    assert open_agent["health"]["status"] == "down"
    assert open_agent["circuit"]["failures"] >= 2
    wait_for(
        lambda: JobEvent.objects.filter(job_id=job_id, type="task.deferred").exists(), timeout=10, message="deferral"
    )
    assert server.calls == 2  # nobody calls an endpoint whose circuit is open

    job = job_wait(job_id, timeout=30)
    assert job.status == "succeeded"
    task = Task.objects.get(job_id=job_id)
    # Attempts 1 and 2 failed and tripped the circuit; waiting did not spend attempt 3.
    assert (task.attempt, task.output, server.calls) == (3, "recovered", 3)
    deferred = JobEvent.objects.filter(job_id=job_id, type="task.deferred").first()
    assert "circuit" in deferred.data["reason"]
    assert circuit()["circuit"]["state"] == "closed"


def test_an_http_agent_asking_a_human_is_called_again_with_the_answer(pipeline, staff, alice, serve):
    from jobs.models import Review

    def script(n, body):
        answers = body["human"].get("answers", [])
        if not answers:
            return 200, {"ask": {"question": "Formal or casual?", "options": ["formal", "casual"]}}
        return 200, {"output": {"tone": answers[-1]["answer"]}}

    server = serve(AGENT_PORT, script)
    register(staff, "writer-http")
    job_id = submit(alice, {"plan": plan({"key": "w", "agent": "writer-http"})})
    review = wait_for(
        lambda: Review.objects.filter(job_id=job_id, kind="question", status="pending").first(), message="question"
    )
    assert review.proposed == {"question": "Formal or casual?", "options": ["formal", "casual"]}
    assert Task.objects.get(job_id=job_id).status == "awaiting_input"

    response = alice.post(f"/reviews/{review.id}/decision", {"decision": "respond", "answer": "casual"}, format="json")
    assert response.status_code == 200, response.content
    assert job_wait(job_id).status == "succeeded"
    assert Task.objects.get(job_id=job_id).output == {"tone": "casual"}
    assert server.calls == 2
    assert server.requests[1]["body"]["human"]["answers"] == [{"question": "Formal or casual?", "answer": "casual"}]


def test_an_http_agent_can_add_follow_up_tasks_to_its_job(pipeline, staff, alice, serve):
    follow_ups = [
        {"key": "page-1", "agent": "echo", "input": {"page": 1}},
        {"key": "page-2", "agent": "echo", "input": {"page": 2}},
    ]
    serve(AGENT_PORT, lambda n, body: (200, {"output": {"pages": 2}, "spawn": follow_ups}))
    register(staff, "crawler-http")
    job_id = submit(alice, {"plan": plan({"key": "crawl", "agent": "crawler-http"})})
    job = job_wait(job_id)
    assert job.status == "succeeded", job.error
    assert set(job.result["outputs"]) == {"page-1", "page-2"}
    assert job.result["outputs"]["page-2"] == {"input": {"page": 2}, "upstream": {"crawl": {"pages": 2}}}
