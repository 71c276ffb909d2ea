"""The core pipeline end to end: REST in, real orchestrator and RQ worker processes,
results out of PostgreSQL."""

from __future__ import annotations

import pytest

from jobs.models import Job, JobEvent, Task
from tests.conftest import job_wait, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DIAMOND = plan(
    {"key": "a", "agent": "echo", "input": {"n": 1}},
    {"key": "b", "agent": "echo", "depends_on": ["a"]},
    {"key": "c", "agent": "echo", "depends_on": ["a"]},
    {"key": "d", "agent": "echo", "depends_on": ["b", "c"], "input": {"last": True}},
)


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_diamond_dag_runs_in_dependency_order_and_succeeds(pipeline, alice):
    job_id = submit(alice, {"requirements": "diamond", "plan": DIAMOND})
    job = job_wait(job_id)
    assert job.status == "succeeded"

    tasks = {t.key: t for t in Task.objects.filter(job_id=job_id)}
    assert all(t.status == "succeeded" and t.attempt == 1 for t in tasks.values())
    assert tasks["a"].finished_at <= tasks["b"].started_at
    assert tasks["a"].finished_at <= tasks["c"].started_at
    assert max(tasks["b"].finished_at, tasks["c"].finished_at) <= tasks["d"].started_at

    results = alice.get(f"/jobs/{job_id}/results").json()
    assert results["status"] == "succeeded"
    # echo returns its input and its upstream outputs: d saw b and c, which saw a.
    d_output = results["tasks"]["d"]["output"]
    assert d_output["input"] == {"last": True}
    assert d_output["upstream"]["b"]["upstream"]["a"]["input"] == {"n": 1}
    assert set(d_output["upstream"]) == {"b", "c"}
    assert results["result"] == {"outputs": {"d": d_output}}


def test_a_flaky_task_is_retried_with_backoff_until_it_succeeds(pipeline, alice):
    job_id = submit(alice, {"plan": plan({"key": "f", "agent": "flaky", "input": {"succeed_on": 3}})})
    job = job_wait(job_id)
    assert job.status == "succeeded"
    task = Task.objects.get(job_id=job_id)
    assert task.attempt == 3
    assert task.output == {"attempt": 3}
    retries = list(JobEvent.objects.filter(job_id=job_id, type="task.retry").order_by("seq"))
    assert [e.data["attempt"] for e in retries] == [1, 2]
    # Backoff doubles per attempt (base 0.2 s in tests), with jitter of 0.5-1.0.
    assert 0.1 <= retries[0].data["retry_in"] <= 0.2
    assert 0.2 <= retries[1].data["retry_in"] <= 0.4


def test_a_task_failing_for_good_fails_the_job_and_skips_its_dependents(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "ok", "agent": "echo"},
            {"key": "bad", "agent": "flaky", "max_attempts": 2},
            {"key": "after_bad", "agent": "echo", "depends_on": ["bad"]},
            {"key": "after_after", "agent": "echo", "depends_on": ["after_bad", "ok"]},
        )
    }
    job_id = submit(alice, body)
    job = job_wait(job_id)
    assert job.status == "failed"
    assert "task 'bad' failed after 2 attempt(s)" in job.error
    tasks = {t.key: t for t in Task.objects.filter(job_id=job_id)}
    assert tasks["ok"].status == "succeeded"
    assert (tasks["bad"].status, tasks["bad"].attempt) == ("failed", 2)
    assert tasks["after_bad"].status == "skipped"
    assert tasks["after_after"].status == "skipped"
    assert tasks["after_bad"].started_at is None


def test_a_non_retryable_error_fails_on_the_first_attempt(pipeline, alice):
    job_id = submit(alice, {"plan": plan({"key": "x", "agent": "broken", "max_attempts": 5})})
    assert job_wait(job_id).status == "failed"
    task = Task.objects.get(job_id=job_id)
    assert (task.status, task.attempt) == ("failed", 1)
    assert "never work" in task.error


def test_a_failure_allowed_by_the_plan_lets_dependents_run_and_the_job_succeed(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "optional", "agent": "broken", "allow_failure": True},
            {"key": "next", "agent": "echo", "depends_on": ["optional"]},
        )
    }
    job_id = submit(alice, body)
    assert job_wait(job_id).status == "succeeded"
    assert Task.objects.get(job_id=job_id, key="next").status == "succeeded"


def test_cancel_stops_a_running_job(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "slow", "agent": "sleepy", "input": {"seconds": 30}},
            {"key": "later", "agent": "echo", "depends_on": ["slow"]},
        )
    }
    job_id = submit(alice, body)
    wait_for(lambda: Task.objects.filter(job_id=job_id, key="slow", status="running").exists(), message="running")

    response = alice.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    statuses = {t.key: t.status for t in Task.objects.filter(job_id=job_id)}
    assert statuses == {"slow": "cancelled", "later": "cancelled"}

    # The worker notices within a heartbeat (1 s in tests) and is free for new work:
    # a new job finishes long before the 30 s sleep would have.
    follow_up = submit(alice, {"plan": plan({"key": "quick", "agent": "echo"})})
    assert job_wait(follow_up, timeout=10).status == "succeeded"
    slow = Task.objects.get(job_id=job_id, key="slow")
    assert slow.status == "cancelled" and slow.output is None
    assert alice.post(f"/jobs/{job_id}/cancel").status_code == 409


def test_a_task_over_its_timeout_is_stopped_and_fails_with_the_reason(pipeline, alice):
    body = {"plan": plan({"key": "slow", "agent": "sleepy", "input": {"seconds": 30}, "timeout": 2, "max_attempts": 1})}
    job = job_wait(submit(alice, body), timeout=15)
    slow = Task.objects.get(job_id=job.id, key="slow")
    assert (job.status, slow.status) == ("failed", "failed")
    assert "timed out after 2s" in slow.error
    assert (slow.finished_at - slow.started_at).total_seconds() < 5


def test_one_worker_watches_attempt_after_attempt(pipeline, alice):
    """The worker's one supervisor thread goes from attempt to attempt: each long task
    in turn is stopped by its cancel, a short one in between leaves nothing behind."""
    for _ in range(3):
        slow = submit(alice, {"plan": plan({"key": "slow", "agent": "sleepy", "input": {"seconds": 30}})})
        wait_for(lambda: Task.objects.filter(job_id=slow, status="running").exists(), message="running")  # noqa: B023
        assert alice.post(f"/jobs/{slow}/cancel").status_code == 200
        quick = submit(alice, {"plan": plan({"key": "quick", "agent": "echo"})})
        assert job_wait(quick, timeout=10).status == "succeeded"


def test_the_events_of_a_job_have_gap_free_increasing_sequence_numbers(pipeline, alice):
    job_id = submit(alice, {"plan": DIAMOND})
    job_wait(job_id)
    body = alice.get(f"/jobs/{job_id}/events").json()
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert body["last_seq"] == len(seqs) == Job.objects.get(pk=job_id).last_seq
    assert body["events"][0]["status"] == "submitted" and body["events"][-1]["status"] == "succeeded"
    # Every task went queued -> running -> succeeded, in that order.
    for key in "abcd":
        trail = [e["status"] for e in body["events"] if e.get("key") == key and e["type"] == "task.status"]
        assert trail == ["queued", "running", "succeeded"], (key, trail)

    after = alice.get(f"/jobs/{job_id}/events?after=5").json()["events"]
    assert [e["seq"] for e in after] == seqs[5:]
