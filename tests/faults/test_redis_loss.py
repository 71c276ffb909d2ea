"""Redis is flushed, or restarted empty, in the middle of a run: inbox hints, RQ
messages and the leader's key are all gone. PostgreSQL is the truth, so the reconciler
finds every job and task whose message was lost and sends it again: every job that got
a 201 still finishes, each task's result is committed once and nothing is left running.

The lab has its own redis-server, so FLUSHALL there wipes only the lab."""

from __future__ import annotations

import pytest

from jobs.models import Task
from tests.conftest import wait_for
from tests.faults.conftest import (
    assert_settled_exactly_once,
    sleep_plan,
    submit,
    wait_jobs,
)

pytestmark = pytest.mark.django_db(transaction=True)

DIAMOND = (("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]))


def _run_with_jobs_in_every_state(lab, alice) -> list[str]:
    lab.orchestrator()
    workers = [lab.worker("lab-w1"), lab.worker("lab-w2")]
    lab.wait_leader()
    lab.wait_worker_ready(*workers)
    jobs = [submit(alice, sleep_plan(*DIAMOND, seconds=0.5)) for _ in range(6)]
    # With 6 jobs and 2 workers, some tasks are running and others wait in the queue.
    wait_for(
        lambda: (
            Task.objects.filter(job_id__in=jobs, status="running").exists()
            and Task.objects.filter(job_id__in=jobs, status="queued").exists()
        ),
        message="tasks both running and queued",
    )
    return jobs


def test_flushall_mid_run_loses_no_job(lab, alice):
    jobs = _run_with_jobs_in_every_state(lab, alice)
    lab.redis.flushall()
    # Submitted after the flush, while the orchestrator may still believe it leads.
    jobs.append(submit(alice, sleep_plan(*DIAMOND, seconds=0.1)))

    wait_jobs(jobs, timeout=90)
    assert_settled_exactly_once(jobs)
    assert lab.leader_pid() is not None  # the orchestrator took its lost key back


def test_redis_restarted_empty_mid_run_loses_no_job(lab, alice):
    jobs = _run_with_jobs_in_every_state(lab, alice)
    lab.server.restart_empty()
    jobs.append(submit(alice, sleep_plan(*DIAMOND, seconds=0.1)))

    wait_jobs(jobs, timeout=90)
    assert_settled_exactly_once(jobs)
