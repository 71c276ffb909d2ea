"""When a schedule's ticks fall: a cron expression in a time zone (croniter), or an interval."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from core.errors import ApplicationError


def timing_validate(*, cron: str, timezone_name: str, interval_seconds: int | None) -> None:
    """Exactly one of a valid cron expression and an interval, and a known time zone."""
    if bool(cron) == (interval_seconds is not None):
        raise ApplicationError(
            "Give either a cron expression or an interval, not both.",
            code="invalid_schedule",
            fields={"cron": ["give cron or interval_seconds"], "interval_seconds": ["give cron or interval_seconds"]},
        )
    if cron:
        try:
            # Valid syntax that never matches ("0 0 30 2 *") fails here, not at the first tick.
            croniter(cron, datetime.now(UTC)).get_next(datetime)
        except Exception:  # croniter's errors share no base of their own
            raise ApplicationError(
                f"cron: '{cron}' is not a cron expression that ever matches",
                code="invalid_schedule",
                fields={"cron": ["not a cron expression that ever matches"]},
            ) from None
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as "America"
        raise ApplicationError(
            f"timezone: unknown time zone '{timezone_name}'",
            code="invalid_schedule",
            fields={"timezone": [f"unknown time zone '{timezone_name}'"]},
        ) from None


def tick_after(schedule, moment: datetime) -> datetime:
    """The schedule's first tick strictly after ``moment`` (UTC).

    Interval ticks sit on a grid anchored at the schedule's creation, so pausing, a run
    by hand or a restart never shifts them."""
    if schedule.cron:
        local = moment.astimezone(ZoneInfo(schedule.timezone))
        return croniter(schedule.cron, local).get_next(datetime).astimezone(UTC)
    anchor, step = schedule.created_at, schedule.interval_seconds
    n = math.floor((moment - anchor).total_seconds() / step) + 1
    tick = anchor + timedelta(seconds=n * step)
    return tick if tick > moment else tick + timedelta(seconds=step)


def tick_latest(schedule, *, since: datetime, now: datetime) -> tuple[datetime, int]:
    """The newest tick at or before ``now``, counting from the due tick ``since``, and
    how many ticks from ``since`` to it were passed over (0: ``since`` is the newest)."""
    if schedule.cron:
        local = (now + timedelta(microseconds=1)).astimezone(ZoneInfo(schedule.timezone))
        newest = max(croniter(schedule.cron, local).get_prev(datetime).astimezone(UTC), since)
        # Counting cron ticks over a long outage would walk them one by one; the count is
        # for the run's detail only, so it stops at 1000.
        passed, probe = 0, since
        while passed < 1000 and (probe := tick_after(schedule, probe)) <= newest:
            passed += 1
        return newest, passed
    step = schedule.interval_seconds
    passed = math.floor((now - since).total_seconds() / step)
    return since + timedelta(seconds=passed * step), passed
