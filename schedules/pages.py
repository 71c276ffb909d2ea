"""/app/schedules: the caller's schedules with their next ticks and latest runs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from schedules.selectors import schedule_list, schedule_runs
from schedules.services import ticks_upcoming


@require_GET
@login_required
def schedule_list_page(request: HttpRequest) -> HttpResponse:
    rows = [
        {"schedule": s, "upcoming": ticks_upcoming(s), "runs": list(schedule_runs(schedule=s, limit=3))}
        for s in schedule_list(user=request.user)[:200]
    ]
    return render(request, "schedules/schedule_list.html", {"rows": rows})
