"""A process dies between its database commit and the Redis message that should
follow it. The commit is the truth; the reconciler finds the work without the message.

Each crash is real: a `manage.py shell` process registers an on-commit hook that
SIGKILLs itself, ahead of the hook that would send the message. Switched off (the
reconciler's re-sending of lost messages disabled), these tests time out."""

from __future__ import annotations

import signal
import time

import pytest

from jobs.models import Job, Task
from tests.conftest import wait_for
from tests.faults.agents import FAULTS_QUEUE
from tests.faults.conftest import (
    assert_settled_exactly_once,
    sleep_plan,
    submit,
    wait_jobs,
)

pytestmark = pytest.mark.django_db(transaction=True)

SUBMIT_THEN_DIE = """
import os, signal
from django.contrib.auth import get_user_model
from django.db import transaction
from jobs.services import job_submit
owner = get_user_model().objects.get(username={username!r})
with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    job, _ = job_submit(owner=owner, spec={spec!r})
    print("JOB", job.id, flush=True)
"""

SUCCEED_THEN_DIE = """
import os, signal
from django.db import transaction
from jobs.lifecycle import task_claim, task_succeed
from jobs.models import Task
task = Task.objects.get(job_id={job_id!r}, key="a")
claimed = task_claim(task_id=str(task.id), attempt=task.attempt, worker="doomed")
with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    task_succeed(task=claimed, output={{"by": "doomed"}})
"""


def _crash(lab, code: str, name: str) -> str:
    proc = lab.processes.start("shell", "-c", code, env=lab.env(), name=name)
    assert proc.wait(60) == -signal.SIGKILL, lab.log(proc)
    return lab.log(proc)


def test_a_job_committed_by_a_web_process_that_died_before_sending_its_roots_still_runs(lab, alice):
    body = sleep_plan(("a", []), ("b", ["a"]), seconds=0.1)
    output = _crash(lab, SUBMIT_THEN_DIE.format(username="alice", spec=body), "crashing-web")
    job_id = output.split("JOB ", 1)[1].split()[0]
    # The submission committed its root as dispatched, but no RQ message exists.
    assert Job.objects.get(pk=job_id).status == "running"
    assert Task.objects.get(job_id=job_id, key="a").status == "queued"
    assert lab.redis.llen(f"rq:queue:{FAULTS_QUEUE}") == 0

    lab.orchestrator()
    lab.worker("lab-w1")
    wait_jobs([job_id], timeout=60)
    assert_settled_exactly_once([job_id])
    assert list(Task.objects.filter(job_id=job_id).order_by("key").values_list("attempt", flat=True)) == [1, 1]


def test_a_dependent_dispatched_by_a_worker_that_died_before_sending_it_is_sent_again(lab, alice):
    job_id = submit(alice, sleep_plan(("a", []), ("b", ["a"]), ("c", ["b"]), seconds=0.1))
    _crash(lab, SUCCEED_THEN_DIE.format(job_id=job_id), "crashing-worker")
    # a's success committed and dispatched b in the same transaction; its message is lost
    # (and a's own message still waits in the queue: a worker drops it as stale).
    assert Task.objects.get(job_id=job_id, key="a").status == "succeeded"
    assert Task.objects.get(job_id=job_id, key="b").status == "queued"
    assert lab.redis.llen(f"rq:queue:{FAULTS_QUEUE}") == 1

    lab.orchestrator()
    lab.worker("lab-w1")
    wait_jobs([job_id], timeout=60)
    assert_settled_exactly_once([job_id])
    assert Task.objects.get(job_id=job_id, key="a").output == {"by": "doomed"}


def test_a_message_waiting_behind_a_backlog_is_not_sent_again(lab, alice):
    """No worker listens, so the message waits; the reconciler sees it in the queue and
    does not pile up copies of it every AGENTBUS_REQUEUE_AFTER."""
    from django.conf import settings

    lab.orchestrator()
    lab.wait_leader()
    job_id = submit(alice, sleep_plan(("a", []), seconds=0.1))
    wait_for(lambda: Task.objects.filter(job_id=job_id, status="queued").exists(), message="queued")
    time.sleep(settings.AGENTBUS_REQUEUE_AFTER * 2 + 1)
    assert lab.redis.llen(f"rq:queue:{FAULTS_QUEUE}") == 1

    lab.worker("lab-w1")
    wait_jobs([job_id], timeout=30)
    assert_settled_exactly_once([job_id])
