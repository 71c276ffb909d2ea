"""SIGTERM is a deploy, not a crash: a worker finishes the task it is running and then
exits; a second SIGTERM (cold shutdown) hands the task back at once without spending
its attempt. (The orchestrator's side, finishing its step and releasing the lead, is in
test_orchestrator_death.)"""

from __future__ import annotations

import signal
import time

import pytest

from jobs.models import JobEvent, Task
from tests.conftest import wait_for
from tests.faults.conftest import (
    assert_settled_exactly_once,
    sleep_plan,
    submit,
    wait_jobs,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_sigterm_lets_a_worker_finish_its_task_then_exit(lab, alice):
    lab.orchestrator()
    worker = lab.worker("lab-w1")
    lab.wait_leader()
    lab.wait_worker_ready(worker)
    job_id = submit(alice, sleep_plan(("slow", []), seconds=2.0))
    wait_for(
        lambda: Task.objects.filter(job_id=job_id, status="running").exists(),
        message="running",
    )

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    task = Task.objects.get(job_id=job_id)
    assert (task.status, task.attempt, task.worker) == ("succeeded", 1, "lab-w1")
    wait_jobs([job_id], timeout=20)
    assert_settled_exactly_once([job_id])


def test_a_cold_shutdown_hands_the_task_back_without_spending_an_attempt(lab, alice):
    lab.orchestrator()
    first, second = lab.worker("lab-w1"), lab.worker("lab-w2")
    lab.wait_leader()
    lab.wait_worker_ready(first, second)
    job_id = submit(alice, sleep_plan(("slow", []), seconds=4.0))
    running = wait_for(
        lambda: Task.objects.filter(job_id=job_id, status="running").first(),
        message="running",
    )
    victim = first if running.worker == first.worker_name else second

    victim.send_signal(signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a second signal within a second of the first
    victim.send_signal(signal.SIGTERM)
    victim.wait(20)

    handed_back = wait_for(
        lambda: JobEvent.objects.filter(job_id=job_id, type="task.deferred").first(),
        timeout=5,
        message="hand-back",
    )
    assert "shut down" in handed_back.data["reason"]
    wait_jobs([job_id], timeout=40)
    assert_settled_exactly_once([job_id])
    task = Task.objects.get(job_id=job_id)
    assert task.attempt == 1  # the interrupted run did not count against max_attempts
    assert task.worker != victim.worker_name
