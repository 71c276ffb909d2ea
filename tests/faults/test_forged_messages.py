"""Redis may be reachable by others, so assume someone writes to it. A job written
straight into the queue that names anything but our entry point, carries a bad
signature, asks for an RQ callback, or is a pickle, runs nothing and is logged; the
worker survives it and goes on running real work."""

from __future__ import annotations

import os
import pickle
import time
import uuid
import zlib

import pytest
from rq import Callback, Queue
from rq.serializers import JSONSerializer

from core.queue import TaskMessage, tasks_enqueue
from jobs.lifecycle import job_advance
from jobs.models import Task
from tests.conftest import wait_for
from tests.faults.agents import FAULTS_QUEUE
from tests.faults.conftest import sleep_plan, submit, wait_jobs

pytestmark = pytest.mark.django_db(transaction=True)


class _RunsOnUnpickle:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _write_raw_job(redis, job_id: str, data: bytes) -> None:
    """A job hash as RQ stores it, written by hand, and its id pushed on the queue."""
    redis.hset(
        f"rq:job:{job_id}",
        mapping={"data": zlib.compress(data), "origin": FAULTS_QUEUE, "status": "queued", "description": "x",
                 "created_at": "2026-01-01T00:00:00.000000Z", "enqueued_at": "2026-01-01T00:00:00.000000Z"},
    )  # fmt: skip
    redis.rpush(f"rq:queue:{FAULTS_QUEUE}", job_id)


def test_forged_queue_messages_run_nothing_and_are_logged(lab, alice, tmp_path):
    # A real task, dispatched (queued, attempt 1) but with its message removed, so the
    # only message for it is the attacker's.
    job_id = submit(alice, sleep_plan(("victim", []), seconds=0.1))
    job_advance(job_id)
    lab.redis.delete(f"rq:queue:{FAULTS_QUEUE}")
    task = Task.objects.get(job_id=job_id)
    assert (task.status, task.attempt) == ("queued", 1)

    markers = {name: tmp_path / name for name in ("system", "callback", "unpickle", "signature")}
    attacker = Queue(FAULTS_QUEUE, connection=lab.redis, serializer=JSONSerializer)
    attacker.enqueue("os.system", f"touch {markers['system']}")
    attacker.enqueue(
        "workers.tasks.task_run",
        str(task.id), 1, "0" * 64,
        description=str(markers["callback"]),
        on_failure=Callback("tests.faults.agents.touch_marker"),
        on_success=Callback("tests.faults.agents.touch_marker"),
    )  # fmt: skip
    attacker.enqueue("workers.tasks.task_run", str(task.id), 1, "f" * 64)
    pickled = pickle.dumps((_RunsOnUnpickle(f"touch {markers['unpickle']}"), None, (), {}))
    _write_raw_job(lab.redis, uuid.uuid4().hex, pickled)

    worker = lab.worker("lab-w1")
    wait_for(
        lambda: lab.redis.llen(f"rq:queue:{FAULTS_QUEUE}") == 0,
        timeout=60,
        message="the queue to drain",
    )
    wait_for(
        lambda: lab.log(worker).count("refused queue message") >= 3,
        timeout=20,
        message="refusals logged",
    )
    time.sleep(0.5)

    assert not [name for name, path in markers.items() if path.exists()]
    task.refresh_from_db()
    assert (task.status, task.attempt, task.started_at, task.output) == (
        "queued",
        1,
        None,
        None,
    )
    log = lab.log(worker)
    assert "names 'os.system'" in log and "bad signature" in log
    assert worker.poll() is None, "a poison message must not take the worker down"

    # The worker still runs what is really ours.
    tasks_enqueue([TaskMessage(str(task.id), 1, FAULTS_QUEUE, 60)])
    wait_for(
        lambda: Task.objects.filter(pk=task.pk, status="succeeded").exists(),
        timeout=30,
        message="victim",
    )
    lab.orchestrator()
    wait_jobs([job_id], timeout=30)
