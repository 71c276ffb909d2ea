"""A process dies between its database commit and the Redis message that should
follow it. The commit is the truth; the reconciler finds the work without the message.

Each crash is real: a `manage.py shell` process registers an on-commit hook that
SIGKILLs itself, ahead of the hook that would send the message."""

from __future__ import annotations

import signal
import time

import pytest

from jobs.models import Job, Task
from orchestration.inbox import INBOX_KEY
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

ADVANCE_THEN_DIE = """
import os, signal
from django.db import transaction
from orchestration.services import job_advance
with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    job_advance({job_id!r})
"""


def _crash(lab, code: str, name: str) -> str:
    proc = lab.processes.start("shell", "-c", code, env=lab.env(), name=name)
    assert proc.wait(60) == -signal.SIGKILL, lab.log(proc)
    return lab.log(proc)


def test_a_job_committed_by_a_web_process_that_died_before_notifying_still_runs(lab, alice):
    body = sleep_plan(("a", []), ("b", ["a"]), seconds=0.1)
    output = _crash(lab, SUBMIT_THEN_DIE.format(username="alice", spec=body), "crashing-web")
    job_id = output.split("JOB ", 1)[1].split()[0]
    assert Job.objects.get(pk=job_id).status == "submitted"
    assert lab.redis.llen(INBOX_KEY) == 0  # the hint was never sent

    lab.orchestrator()
    lab.worker("lab-w1")
    wait_jobs([job_id], timeout=60)
    assert_settled_exactly_once([job_id])


def test_tasks_queued_by_an_orchestrator_that_died_before_enqueueing_are_sent_again(lab, alice):
    job_id = submit(alice, sleep_plan(("a", []), ("b", []), ("c", ["a", "b"]), seconds=0.1))
    _crash(lab, ADVANCE_THEN_DIE.format(job_id=job_id), "crashing-orchestrator")
    # The dispatch committed (tasks marked queued) but no RQ message exists.
    assert set(Task.objects.filter(job_id=job_id, key__in="ab").values_list("status", flat=True)) == {"queued"}
    assert lab.redis.llen(f"rq:queue:{FAULTS_QUEUE}") == 0

    lab.orchestrator()
    lab.worker("lab-w1")
    wait_jobs([job_id], timeout=60)
    assert_settled_exactly_once([job_id])
    assert list(Task.objects.filter(job_id=job_id).values_list("attempt", flat=True)) == [1, 1, 1]


def test_a_reconciled_job_does_not_wait_for_a_hint(lab, alice):
    """The inbox is only a hint: with it emptied by hand, the reconciler still acts."""
    lab.orchestrator()
    lab.worker("lab-w1")
    lab.wait_leader()
    job_id = submit(alice, sleep_plan(("a", []), seconds=0.1))
    lab.redis.delete(INBOX_KEY)
    wait_jobs([job_id], timeout=30)
    assert_settled_exactly_once([job_id])
    wait_for(lambda: lab.redis.llen(INBOX_KEY) == 0, message="an empty inbox")


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
