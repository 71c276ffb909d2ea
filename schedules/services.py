"""Writes on schedules: create, change, pause, resume, delete, run now, and the
orchestrator's step that fires due ticks (``schedules_fire_due``)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from jobs.models import JOB_ACTIVE, Job
from jobs.services import job_cancel, job_spec_validate, job_submit
from schedules.models import CatchupPolicy, OverlapPolicy, RunAction, Schedule, ScheduleRun
from schedules.timing import tick_after, tick_latest, timing_validate

logger = logging.getLogger(__name__)

# Fields whose change moves the schedule's next tick.
TIMING_FIELDS = ("cron", "timezone", "interval_seconds")


def tick_key(schedule_id, tick: datetime) -> str:
    """The idempotency key of the job a tick submits: one job per schedule and tick."""
    return f"schedule:{schedule_id}:{tick.isoformat()}"


def schedule_create(*, owner, template: dict, **fields) -> Schedule:
    """Store a schedule whose job template passed POST /jobs' checks; its first tick is
    the first one after now (unless it starts paused)."""
    job_spec_validate(spec=template, prefix="job.")
    timing_validate(
        cron=fields.get("cron", ""),
        timezone_name=fields.get("timezone", "UTC"),
        interval_seconds=fields.get("interval_seconds"),
    )
    schedule = Schedule(owner=owner, template=template, **fields)
    schedule.created_at = timezone.now()  # the interval grid's anchor, before the first save
    if not schedule.paused:
        schedule.next_run_at = tick_after(schedule, schedule.created_at)
    schedule.save()
    return schedule


def schedule_update(*, schedule: Schedule, changes: dict) -> Schedule:
    """Change a schedule (PATCH). A new template is checked like a submission; a new
    cron, time zone or interval moves the next tick to the first one after now."""
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().get(pk=schedule.pk)
        if "template" in changes:
            job_spec_validate(spec=changes["template"], prefix="job.")
        for name, value in changes.items():
            setattr(locked, name, value)
        if changes.get("cron"):
            locked.interval_seconds = None
        if changes.get("interval_seconds") is not None:
            locked.cron = ""
        timing_validate(cron=locked.cron, timezone_name=locked.timezone, interval_seconds=locked.interval_seconds)
        if any(f in changes for f in TIMING_FIELDS) and not locked.paused:
            locked.next_run_at = tick_after(locked, timezone.now())
        locked.save()
    return locked


def schedule_pause(*, schedule: Schedule) -> Schedule:
    """Stop firing; a buffered tick is dropped too."""
    Schedule.objects.filter(pk=schedule.pk).update(
        paused=True, next_run_at=None, buffered_tick=None, updated_at=timezone.now()
    )
    schedule.refresh_from_db()
    return schedule


def schedule_resume(*, schedule: Schedule) -> Schedule:
    """Fire again from the first tick after now: the ticks of the pause are not caught up."""
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().get(pk=schedule.pk)
        if locked.paused:
            locked.paused = False
            locked.next_run_at = tick_after(locked, timezone.now())
            locked.save(update_fields=["paused", "next_run_at", "updated_at"])
    return locked


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete the schedule and its run log; the jobs it started stay."""
    schedule.delete()


def schedule_trigger(*, schedule: Schedule) -> ScheduleRun:
    """Run now, by hand: a tick at this instant, under the schedule's overlap policy;
    the schedule's own next tick does not move."""
    now = timezone.now()
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().select_related("owner").get(pk=schedule.pk)
        return _tick_run(locked, tick=now, now=now, manual=True)


def schedules_fire_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """The orchestrator's step: start buffered ticks whose blocking run finished, then
    fire every due tick. Returns how many ticks it handled.

    Safe with several orchestrators at once: each tick is claimed by a conditional
    UPDATE of ``next_run_at`` in the transaction that submits its job."""
    now = now or timezone.now()
    handled = 0
    # Reads the partial index schedule_buffered.
    for schedule_id in Schedule.objects.filter(buffered_tick__isnull=False).values_list("id", flat=True)[:limit]:
        handled += _buffer_release(schedule_id, now=now)
    # Reads the partial index schedule_due.
    due = (
        Schedule.objects.filter(paused=False, next_run_at__lte=now)
        .order_by("next_run_at")
        .values_list("id", "next_run_at")[:limit]
    )
    for schedule_id, tick in due:
        try:
            handled += schedule_tick_fire(schedule_id=schedule_id, tick=tick, now=now)
        except Exception:
            # One broken schedule must not stop the others; its tick is tried next pass.
            logger.exception("firing schedule %s at %s failed", schedule_id, tick)
    return handled


def schedule_tick_fire(*, schedule_id, tick: datetime, now: datetime) -> int:
    """Fire the due ``tick`` of one schedule; 0 when another process claimed it first.

    1. Find the newest tick at or before now (ticks passed over while no orchestrator
       ran are not run one by one) and the first tick after now.
    2. Claim: ``UPDATE ... SET next_run_at = <next> WHERE id = <id> AND next_run_at =
       <tick>``. One row updated means this transaction owns the tick; the row stays
       locked until commit, so a concurrent claimer waits, then finds it moved on.
    3. Late (due longer ago than AGENTBUS_SCHEDULE_LATE_AFTER): the catch-up policy
       decides; ``skip`` records the tick as skipped, ``run_once`` runs it if it is
       within the schedule's catchup_window.
    4. Run it under the overlap policy, in the same transaction: a crash before commit
       undoes the claim and the job together, and the next leader fires the tick.
    """
    schedule = Schedule.objects.select_related("owner").filter(pk=schedule_id).first()
    if schedule is None:
        return 0
    newest, passed = tick_latest(schedule, since=tick, now=now)
    following = tick_after(schedule, max(newest, now))
    with transaction.atomic():
        claimed = Schedule.objects.filter(pk=schedule_id, paused=False, next_run_at=tick).update(
            next_run_at=following, updated_at=now
        )
        if claimed != 1:
            return 0
        schedule.refresh_from_db()  # under the row lock the claim took
        missed = f"{passed} earlier tick(s) passed over while no orchestrator ran; " if passed else ""
        lateness = (now - newest).total_seconds()
        if lateness > settings.AGENTBUS_SCHEDULE_LATE_AFTER:
            if schedule.catchup == CatchupPolicy.SKIP:
                _run_record(
                    schedule, newest, RunAction.SKIPPED, detail=f"{missed}missed by {lateness:.0f} s (catchup: skip)"
                )
                return 1
            if lateness > schedule.catchup_window:
                _run_record(
                    schedule,
                    newest,
                    RunAction.SKIPPED,
                    detail=f"{missed}missed by {lateness:.0f} s, outside the catch-up window of {schedule.catchup_window} s",
                )
                return 1
            missed += "caught up; "
        _tick_run(schedule, tick=newest, now=now, detail=missed)
    return 1


def _tick_run(
    schedule: Schedule, *, tick: datetime, now: datetime, manual: bool = False, detail: str = ""
) -> ScheduleRun:
    """Run one tick under the overlap policy; the caller holds the schedule's row."""
    active = _active_jobs(schedule)
    if active:
        if schedule.overlap == OverlapPolicy.SKIP:
            return _run_record(
                schedule, tick, RunAction.SKIPPED, manual=manual, detail=f"{detail}the previous run is still going"
            )
        if schedule.overlap == OverlapPolicy.BUFFER_ONE:
            if schedule.buffered_tick is not None:
                return _run_record(
                    schedule, tick, RunAction.SKIPPED, manual=manual, detail=f"{detail}a run is already buffered"
                )
            Schedule.objects.filter(pk=schedule.pk).update(buffered_tick=tick)
            schedule.buffered_tick = tick
            return _run_record(
                schedule, tick, RunAction.BUFFERED, manual=manual, detail=f"{detail}waits for the running job"
            )
        if schedule.overlap == OverlapPolicy.CANCEL_OTHER:
            for job in active:
                try:
                    job_cancel(job=job)
                except ApplicationError:
                    pass  # it finished meanwhile
            detail += f"cancelled {len(active)} running job(s); "
    return _submit(schedule, tick, now=now, manual=manual, detail=detail)


def _buffer_release(schedule_id, *, now: datetime) -> int:
    """Start a buffered tick once the run it waited for has finished."""
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(skip_locked=True)
            .select_related("owner")
            .filter(pk=schedule_id, buffered_tick__isnull=False)
            .first()
        )
        if schedule is None or _active_jobs(schedule):
            return 0
        tick = schedule.buffered_tick
        Schedule.objects.filter(pk=schedule_id).update(buffered_tick=None)
        schedule.buffered_tick = None
        _submit(schedule, tick, now=now, detail="released from the buffer; ")
    return 1


def _active_jobs(schedule: Schedule) -> list[Job]:
    # The owner's unfinished jobs (index job_owner_status_created) started by this schedule.
    return list(
        Job.objects.filter(
            owner_id=schedule.owner_id, status__in=JOB_ACTIVE, idempotency_key__startswith=f"schedule:{schedule.id}:"
        )
    )


def _submit(
    schedule: Schedule, tick: datetime, *, now: datetime, manual: bool = False, detail: str = ""
) -> ScheduleRun:
    try:
        with transaction.atomic():
            job, _ = job_submit(
                owner=schedule.owner, spec=schedule.template, idempotency_key=tick_key(schedule.id, tick)
            )
    except ApplicationError as exc:
        # The template stopped submitting (an agent removed, the owner's quota full): the
        # tick is recorded as failed and the schedule goes on; nothing retries it.
        return _run_record(schedule, tick, RunAction.FAILED, manual=manual, detail=f"{detail}{exc.code}: {exc.message}")
    Schedule.objects.filter(pk=schedule.pk).update(last_run_at=now)
    return _run_record(schedule, tick, RunAction.STARTED, job=job, manual=manual, detail=detail.rstrip("; "))


def _run_record(schedule: Schedule, tick: datetime, action: str, **fields) -> ScheduleRun:
    fields["detail"] = fields.get("detail", "").rstrip("; ")
    run, _ = ScheduleRun.objects.update_or_create(schedule=schedule, tick=tick, defaults={"action": action, **fields})
    return run


def ticks_upcoming(schedule: Schedule, *, count: int = 3) -> list[datetime]:
    """The next ``count`` ticks, for the dashboard."""
    if schedule.paused or schedule.next_run_at is None:
        return []
    ticks = [schedule.next_run_at]
    while len(ticks) < count:
        ticks.append(tick_after(schedule, ticks[-1]))
    return ticks
