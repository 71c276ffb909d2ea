"""Overlap policies with real orchestrator and worker processes: a schedule ticking every
second whose job takes longer than that."""

from __future__ import annotations

import itertools
import time

import pytest

from jobs.models import JOB_ACTIVE, Job
from schedules.models import RunAction, Schedule, ScheduleRun
from schedules.services import schedule_create, schedule_pause
from tests.conftest import make_user, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {"plan": plan({"key": "s", "agent": "sleepy", "input": {"seconds": 2.2}})}


def run_for(overlap: str, seconds: float = 7.0, *, started: int = 0) -> Schedule:
    """Let the schedule tick for at least ``seconds``, and on until ``started`` of its ticks
    have started a job: a busy machine's orchestrator may come late to a tick, and a late
    one folds the ticks it passed over into one, so a wall-clock span alone can see fewer."""
    schedule = schedule_create(owner=make_user("alice"), template=SLOW, interval_seconds=1, overlap=overlap)
    time.sleep(seconds)
    wait_for(lambda: len(started_jobs(schedule)) >= started, timeout=30, message=f"{started} started ticks")
    schedule_pause(schedule=schedule)
    return schedule


def started_jobs(schedule: Schedule) -> list[Job]:
    runs = ScheduleRun.objects.filter(schedule=schedule, action=RunAction.STARTED).order_by("tick")
    return [Job.objects.get(pk=r.job_id) for r in runs]


def settle(schedule: Schedule) -> list[Job]:
    """Wait for the schedule's jobs to finish; returns them by tick."""
    wait_for(
        lambda: (
            not Job.objects.filter(idempotency_key__startswith=f"schedule:{schedule.id}:", status__in=JOB_ACTIVE)
            .exclude(status="cancelled")
            .exists()
        ),
        timeout=40,
        message="the schedule's jobs to finish",
    )
    return started_jobs(schedule)


def overlapping(jobs: list[Job]) -> bool:
    return any(b.created_at < a.finished_at for a, b in itertools.pairwise(jobs))


def actions(schedule: Schedule) -> list[str]:
    return list(ScheduleRun.objects.filter(schedule=schedule).order_by("tick").values_list("action", flat=True))


def test_skip_leaves_out_the_ticks_that_come_while_a_run_is_going(pipeline):
    schedule = run_for("skip", started=2)
    jobs = settle(schedule)
    assert len(jobs) >= 2
    assert not overlapping(jobs)
    skipped = ScheduleRun.objects.filter(schedule=schedule, action=RunAction.SKIPPED)
    assert skipped.count() >= 2
    assert all("still going" in r.detail for r in skipped)


def test_allow_all_runs_every_tick_alongside_the_others(pipeline):
    schedule = run_for("allow_all", seconds=4.5, started=4)
    jobs = settle(schedule)
    assert set(actions(schedule)) == {RunAction.STARTED}
    assert len(jobs) >= 4
    assert overlapping(jobs)


def test_buffer_one_holds_one_tick_and_starts_it_when_the_run_finishes(pipeline):
    schedule = run_for("buffer_one")
    jobs = settle(schedule)
    assert not overlapping(jobs)
    released = ScheduleRun.objects.filter(schedule=schedule, detail__contains="released from the buffer")
    assert released.exists()
    for run in released:
        before = Job.objects.filter(
            idempotency_key__startswith=f"schedule:{schedule.id}:", created_at__lt=run.job.created_at
        ).order_by("-created_at")[0]
        assert before.finished_at <= run.job.created_at  # started once the one it waited for was done
    # More ticks came while one was already held: those were skipped, never queued up.
    assert ScheduleRun.objects.filter(schedule=schedule, action=RunAction.SKIPPED, detail__contains="already buffered")
    assert Schedule.objects.get(pk=schedule.pk).buffered_tick is None


def test_cancel_other_cancels_the_running_job_and_starts_the_new_one(pipeline):
    schedule = run_for("cancel_other", seconds=4.5, started=3)
    jobs = settle(schedule)
    assert len(jobs) >= 3
    assert all(j.status == "cancelled" for j in jobs[:-1])
    assert jobs[-1].status == "succeeded"
    assert ScheduleRun.objects.filter(schedule=schedule, detail__contains="cancelled 1 running job").count() >= 2
