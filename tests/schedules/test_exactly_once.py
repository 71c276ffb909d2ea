"""Exactly one job per tick: two orchestrators, and the leader SIGKILLed in the middle of
firing a tick (after its claim, before its commit). The tick is fired once, by the
standby, and every other tick once too."""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from jobs.models import Job
from orchestration.leader import leader_identity
from schedules.models import RunAction, Schedule, ScheduleRun
from schedules.services import schedule_create, schedules_fire_due, tick_key
from tests.conftest import database_url, make_user, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TEMPLATE = {"requirements": "tick", "plan": plan({"key": "a", "agent": "unserved_echo"})}
INTERVAL = 6  # longer than a take-over (lock TTL 2 s + a standby's poll), so the next tick is not due yet


def _jobs_per_tick(schedule: Schedule) -> dict:
    runs = ScheduleRun.objects.filter(schedule=schedule, action=RunAction.STARTED)
    return {run.tick: Job.objects.filter(idempotency_key=tick_key(schedule.id, run.tick)).count() for run in runs}


def _leader_pid() -> int | None:
    identity = leader_identity()
    return int(identity.split(":")[1]) if identity else None


def _backend_waiting_on(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
        # The job's INSERT, on its own or as the first part of a submission's one statement.
        "AND query ILIKE '%%INSERT INTO \"jobs_job\"%%'"
    ).fetchone()
    return row[0] > 0


BLOCKING_JOB = """
INSERT INTO jobs_job (id, owner_id, requirements, review_plan, priority, metadata, remember, status, error,
                      idempotency_key, request_digest, last_seq, advanced_seq, tokens_used, created_at)
VALUES (%s, %s, '', false, 0, '{}', false, 'submitted', '', %s, '', 0, 0, 0, %s)
"""


def test_a_tick_fires_once_when_the_leader_is_killed_while_firing_it(processes):
    owner = make_user("alice")
    schedule = schedule_create(owner=owner, template=TEMPLATE, interval_seconds=INTERVAL, overlap="allow_all")
    first = processes.start("orchestrate", name="sched-o1")
    second = processes.start("orchestrate", name="sched-o2")
    try:
        wait_for(lambda: _leader_pid() in (first.pid, second.pid), timeout=30, message="a leader")
        wait_for(
            lambda: ScheduleRun.objects.filter(schedule=schedule).exists(),
            timeout=INTERVAL + 10,
            message="a first tick",
        )
        leader_pid = _leader_pid()
        leader, standby = (first, second) if first.pid == leader_pid else (second, first)

        # An uncommitted job with the next tick's idempotency key, in another connection:
        # the leader's INSERT of the tick's job waits on it, after its claim of the tick,
        # inside the transaction that would commit both.
        tick = Schedule.objects.get(pk=schedule.pk).next_run_at
        blocker = psycopg.connect(database_url())
        observer = psycopg.connect(database_url(), autocommit=True)
        try:
            blocker.execute(BLOCKING_JOB, [uuid.uuid4(), owner.id, tick_key(schedule.id, tick), timezone.now()])
            wait_for(lambda: _backend_waiting_on(observer), timeout=INTERVAL + 10, message="the leader mid-tick")
            # The claim is made but not committed: others still see the tick due.
            assert Schedule.objects.get(pk=schedule.pk).next_run_at == tick

            leader.send_signal(signal.SIGKILL)
            leader.wait(5)
            time.sleep(0.5)
        finally:
            blocker.rollback()  # the dead leader's transaction now fails, and rolls back claim and all
            blocker.close()

        wait_for(lambda: _leader_pid() == standby.pid, timeout=15, message="the standby to lead")
        wait_for(
            lambda: ScheduleRun.objects.filter(schedule=schedule, tick=tick).exists(),
            timeout=15,
            message="the standby to fire the tick",
        )
        # One more tick after the take-over, fired by the new leader as usual.
        wait_for(
            lambda: ScheduleRun.objects.filter(schedule=schedule, tick__gt=tick).exists(),
            timeout=INTERVAL + 10,
            message="the following tick",
        )
        observer.close()
    finally:
        processes.stop(first)
        processes.stop(second)

    per_tick = _jobs_per_tick(schedule)
    assert per_tick[tick] == 1
    assert all(count == 1 for count in per_tick.values()), per_tick
    ticks = sorted(per_tick)
    assert len(ticks) >= 3
    # Consecutive ticks, none lost and none doubled.
    assert all(b - a == timedelta(seconds=INTERVAL) for a, b in itertools.pairwise(ticks))
    assert Job.objects.filter(idempotency_key__startswith=f"schedule:{schedule.id}:").count() == len(ticks)


def test_two_processes_firing_the_same_due_tick_at_once_start_one_job(db):
    owner = make_user("alice")
    schedule = schedule_create(owner=owner, template=TEMPLATE, interval_seconds=60)
    now = schedule.next_run_at + timedelta(seconds=1)
    barrier = threading.Barrier(4)
    results = []

    def fire():
        barrier.wait()
        try:
            results.append(schedules_fire_due(now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 0, 1]
    assert Job.objects.filter(owner=owner).count() == 1
    assert ScheduleRun.objects.get(schedule=schedule).action == RunAction.STARTED
    assert Schedule.objects.get(pk=schedule.pk).next_run_at == schedule.next_run_at + timedelta(seconds=60)
    assert timezone.now() < now + timedelta(seconds=60)
