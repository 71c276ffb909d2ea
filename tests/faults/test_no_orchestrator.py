"""No orchestrator runs at all: jobs with explicit plans still run to the end, because a
task's success dispatches its dependents in its own transaction (jobs.lifecycle). What
needs a clock (a retry's backoff) waits for an orchestrator to come back."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from jobs.models import Job, Task
from tests.faults.conftest import assert_settled_exactly_once, sleep_plan, submit, wait_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def test_jobs_with_explicit_plans_run_to_the_end_with_every_orchestrator_stopped(lab, alice):
    worker = lab.worker("lab-w1")
    lab.wait_worker_ready(worker)
    assert lab.leader_pid() is None  # nobody leads: no orchestrator exists
    diamond = sleep_plan(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), seconds=0.05)
    chain = sleep_plan(("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"]), seconds=0.05)
    jobs = [submit(alice, diamond) for _ in range(3)] + [submit(alice, chain) for _ in range(3)]
    wait_jobs(jobs, timeout=60)
    assert_settled_exactly_once(jobs)


def test_a_retry_waits_for_an_orchestrator_and_runs_once_one_is_back(lab, alice):
    worker = lab.worker("lab-w1")
    lab.wait_worker_ready(worker)
    body = {
        "plan": {"tasks": [{"key": "a", "agent": "lab_flaky"}, {"key": "b", "agent": "lab_sleep", "depends_on": ["a"]}]}
    }
    job_id = submit(alice, body)
    time.sleep(settings.AGENTBUS_RETRY_BACKOFF_MAX + 1)  # long past its backoff
    task = Task.objects.get(job_id=job_id, key="a")
    assert (task.status, task.attempt) == ("pending", 1)  # its retry is due, but no clock runs
    assert Job.objects.get(pk=job_id).status == "running"

    lab.orchestrator()
    wait_jobs([job_id], timeout=30)
    assert_settled_exactly_once([job_id])
    assert Task.objects.get(job_id=job_id, key="a").attempt == 2
