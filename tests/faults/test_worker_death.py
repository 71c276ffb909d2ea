"""A worker killed mid-task (SIGKILL: no goodbye, no cleanup) loses nothing: its
missing heartbeat gives the attempt up within AGENTBUS_TASK_HEARTBEAT_TIMEOUT, another
worker runs the next attempt, and the result is committed exactly once."""

from __future__ import annotations

import signal
import time

import pytest
from django.conf import settings

from jobs.models import JobEvent, Task
from tests.conftest import wait_for
from tests.faults.conftest import (
    assert_settled_exactly_once,
    sleep_plan,
    submit,
    wait_jobs,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_task_whose_worker_is_killed_is_retried_by_another_worker_and_committed_once(lab, alice):
    lab.orchestrator()
    first, second = lab.worker("lab-w1"), lab.worker("lab-w2")
    lab.wait_leader()
    lab.wait_worker_ready(first, second)

    job_id = submit(alice, sleep_plan(("slow", []), ("after", ["slow"]), seconds=2.5))
    running = wait_for(
        lambda: Task.objects.filter(job_id=job_id, key="slow", status="running").first(),
        message="slow to run",
    )
    victim = first if running.worker == first.worker_name else second
    survivor = second if victim is first else first
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait(5)

    wait_for(
        lambda: JobEvent.objects.filter(job_id=job_id, type="task.retry").exists(),
        timeout=settings.AGENTBUS_TASK_HEARTBEAT_TIMEOUT + 10,
        message="the silent attempt to be given up",
    )
    # The last heartbeat was at most a third of the timeout before the kill; the
    # reconciler looks every AGENTBUS_RECONCILE_INTERVAL.
    detected_after = time.monotonic() - killed_at
    assert detected_after <= settings.AGENTBUS_TASK_HEARTBEAT_TIMEOUT + settings.AGENTBUS_RECONCILE_INTERVAL + 1.5

    wait_jobs([job_id], timeout=40)
    assert_settled_exactly_once([job_id])
    slow = Task.objects.get(job_id=job_id, key="slow")
    assert slow.attempt == 2
    assert slow.worker == survivor.worker_name
    assert slow.output["attempt"] == 2
    retry = JobEvent.objects.get(job_id=job_id, type="task.retry")
    assert retry.data["attempt"] == 1 and "stopped heartbeating" in retry.data["error"]
