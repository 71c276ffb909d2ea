"""Per-agent concurrency limits hold over several workers, without spending attempts."""

from __future__ import annotations

import itertools

import pytest
from rq import Worker

from jobs.models import JobEvent, Task
from tests.conftest import job_wait, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_agent_limited_to_one_task_never_runs_two_at_once_over_two_workers(
    pipeline, processes, redis_flushed, alice
):
    second = processes.start("rqworker", "default", name="second-worker")
    wait_for(
        lambda: sum("default" in w.queue_names() for w in Worker.all(connection=redis_flushed)) >= 2,
        timeout=30,
        message="two workers",
    )
    try:
        body = {"plan": plan(*({"key": f"s{i}", "agent": "solo", "input": {"seconds": 0.6}} for i in range(3)))}
        response = alice.post("/jobs", body, format="json")
        assert response.status_code == 201, response.content
        job_id = response.json()["id"]
        assert job_wait(job_id, timeout=40).status == "succeeded"
    finally:
        processes.stop(second)

    tasks = Task.objects.filter(job_id=job_id)
    assert all(t.attempt == 1 for t in tasks)  # waiting for the slot spent no attempt
    runs = sorted((t.output["began"], t.output["ended"]) for t in tasks)
    for earlier, later in itertools.pairwise(runs):
        assert earlier[1] <= later[0], "two tasks of a limit-1 agent ran at once"
    deferred = JobEvent.objects.filter(job_id=job_id, type="task.deferred")
    assert deferred.exists()
    assert all("limit of 1" in e.data["reason"] for e in deferred)
