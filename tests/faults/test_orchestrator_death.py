"""The orchestrator dies (SIGKILL) or is stopped (SIGTERM) while a standby runs: the
standby takes the lead within a few seconds of the lock expiring (at once after a
graceful stop, which releases the lock), rebuilds everything from PostgreSQL, and every
job finishes with each result committed once."""

from __future__ import annotations

import signal
import time

import pytest
from django.conf import settings

from jobs.models import Task
from tests.conftest import wait_for
from tests.faults.conftest import (
    assert_settled_exactly_once,
    sleep_plan,
    submit,
    wait_jobs,
)

pytestmark = pytest.mark.django_db(transaction=True)

CHAIN = (("a", []), ("b", ["a"]), ("c", ["b"]))


def _two_orchestrators(lab):
    first, second = lab.orchestrator("o1"), lab.orchestrator("o2")
    worker = lab.worker("lab-w1")
    lab.wait_worker_ready(worker)
    # Both must be up (one leading, one standing by) before the leader is stopped.
    wait_for(
        lambda: all("starting" in lab.log(p) for p in (first, second)),
        timeout=40,
        message="both up",
    )
    leader_pid = lab.wait_leader()
    leader, standby = (first, second) if first.pid == leader_pid else (second, first)
    return leader, standby


def test_a_standby_takes_the_lead_when_the_leader_is_killed_and_jobs_finish(lab, alice):
    leader, standby = _two_orchestrators(lab)
    jobs = [submit(alice, sleep_plan(*CHAIN, seconds=0.4)) for _ in range(3)]
    # Kill the leader in the middle of the jobs: some tasks done, some not yet dispatched.
    wait_for(
        lambda: Task.objects.filter(job_id__in=jobs, status="succeeded").exists(),
        message="progress",
    )
    leader.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    leader.wait(5)

    wait_for(
        lambda: lab.leader_pid() == standby.pid,
        timeout=15,
        message="the standby to lead",
    )
    took_over_after = time.monotonic() - killed_at
    # The key outlives its holder by at most the TTL; a standby polls every TTL / 5.
    assert took_over_after <= settings.AGENTBUS_LEADER_LOCK_TTL * 1.2 + 1.5

    wait_jobs(jobs, timeout=60)
    assert_settled_exactly_once(jobs)


def test_sigterm_lets_the_leader_finish_its_step_and_hand_over_at_once(lab, alice):
    leader, standby = _two_orchestrators(lab)
    jobs = [submit(alice, sleep_plan(*CHAIN, seconds=0.3)) for _ in range(2)]
    leader.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert leader.wait(10) == 0
    assert "stopped" in lab.log(leader)

    wait_for(
        lambda: lab.leader_pid() == standby.pid,
        timeout=10,
        message="the standby to lead",
    )
    # A graceful leader releases the lock, so the standby does not wait for it to expire.
    assert time.monotonic() - stopped_at < settings.AGENTBUS_LEADER_LOCK_TTL
    wait_jobs(jobs, timeout=60)
    assert_settled_exactly_once(jobs)


def test_a_restarted_orchestrator_rebuilds_what_it_needs_from_postgresql(lab, alice):
    """Jobs submitted while no orchestrator runs, and Redis restarted empty before one
    comes back (so not even the hints survive), still run to the end."""
    worker = lab.worker("lab-w1")
    jobs = [submit(alice, sleep_plan(*CHAIN, seconds=0.1)) for _ in range(3)]
    lab.server.restart_empty()
    lab.orchestrator()
    lab.wait_worker_ready(worker, timeout=60)
    wait_jobs(jobs, timeout=60)
    assert_settled_exactly_once(jobs)
