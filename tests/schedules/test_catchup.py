"""Catch-up after downtime, with a real orchestrator stopped and started again: ``skip``
leaves a missed tick out, ``run_once`` runs it once if it is within the schedule's
catch-up window, and an on-time tick runs whatever the policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestration.leader import leader_identity
from schedules.models import RunAction, Schedule, ScheduleRun
from schedules.services import schedule_create
from tests.conftest import make_user, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TEMPLATE = {"plan": plan({"key": "a", "agent": "unserved_echo"})}
ENV = {"AGENTBUS_SCHEDULE_LATE_AFTER": "5"}


def test_a_tick_missed_while_the_orchestrator_was_down_follows_the_catchup_policy(processes):
    owner = make_user("alice")

    def make(**kw):
        return schedule_create(owner=owner, template=TEMPLATE, interval_seconds=3600, **kw)

    skip = make(catchup="skip")
    once = make(catchup="run_once", catchup_window=120)
    too_late = make(catchup="run_once", catchup_window=20)
    on_time = make(catchup="skip")

    orchestrator = processes.start("orchestrate", env=ENV, name="catchup-o1")
    wait_for(leader_identity, timeout=30, message="the orchestrator to lead")
    processes.stop(orchestrator)
    wait_for(lambda: leader_identity() is None, timeout=10, message="the lock released")
    assert not ScheduleRun.objects.exists()

    # While it is down, each schedule's tick falls due: 60 s ago (an hour-long interval
    # would make the test wait an hour; the tick is the row's next_run_at either way).
    # ``on_time``'s tick is 1 s ago, within AGENTBUS_SCHEDULE_LATE_AFTER.
    now = timezone.now()
    ticks = {s.pk: now - timedelta(seconds=60) for s in (skip, once, too_late)} | {
        on_time.pk: now - timedelta(seconds=1)
    }
    for pk, tick in ticks.items():
        Schedule.objects.filter(pk=pk).update(next_run_at=tick)

    orchestrator = processes.start("orchestrate", env=ENV, name="catchup-o2")
    try:
        wait_for(lambda: ScheduleRun.objects.count() == 4, timeout=30, message="the missed ticks handled")
    finally:
        processes.stop(orchestrator)

    runs = {r.schedule_id: r for r in ScheduleRun.objects.all()}
    assert all(runs[pk].tick == tick for pk, tick in ticks.items())
    assert runs[skip.pk].action == RunAction.SKIPPED and "catchup: skip" in runs[skip.pk].detail
    assert runs[skip.pk].job is None
    assert runs[once.pk].action == RunAction.STARTED and "caught up" in runs[once.pk].detail
    assert runs[once.pk].job is not None
    assert runs[too_late.pk].action == RunAction.SKIPPED
    assert "outside the catch-up window" in runs[too_late.pk].detail
    assert runs[on_time.pk].action == RunAction.STARTED and runs[on_time.pk].job is not None
    # Every schedule waits for its next tick on its grid, in the future.
    for schedule in Schedule.objects.all():
        assert schedule.next_run_at > now
        assert (schedule.next_run_at - schedule.created_at) % timedelta(seconds=3600) == timedelta(0)


def test_ticks_passed_over_during_downtime_run_once_not_one_by_one(db):
    from schedules.services import schedules_fire_due

    schedule = schedule_create(
        owner=make_user("alice"), template=TEMPLATE, interval_seconds=10, overlap="allow_all", catchup="run_once"
    )
    later = schedule.next_run_at + timedelta(seconds=95)  # ten ticks due at once
    assert schedules_fire_due(now=later) == 1
    (run,) = ScheduleRun.objects.all()
    assert run.action == RunAction.STARTED
    assert run.tick == schedule.next_run_at + timedelta(seconds=90)
    assert "9 earlier tick(s) passed over" in run.detail
