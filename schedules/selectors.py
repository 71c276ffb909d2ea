"""Reads on schedules, scoped to what the caller may see (staff see all)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from schedules.models import Schedule, ScheduleRun


def schedules_visible_to(user) -> QuerySet[Schedule]:
    schedules = Schedule.objects.select_related("owner")
    return schedules if user.is_staff else schedules.filter(owner=user)


def schedule_list(*, user) -> QuerySet[Schedule]:
    return schedules_visible_to(user).order_by("created_at")


def schedule_get(*, user, schedule_id) -> Schedule:
    """The schedule, if the caller may see it; another user's is a 404."""
    schedule = schedules_visible_to(user).filter(pk=schedule_id).first()
    if schedule is None:
        raise Http404("No such schedule.")
    return schedule


def schedule_runs(*, schedule: Schedule, limit: int = 20) -> QuerySet[ScheduleRun]:
    # Reads the schedule_run_tick index backwards.
    return ScheduleRun.objects.filter(schedule=schedule).select_related("job").order_by("-tick")[:limit]
