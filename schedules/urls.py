"""/schedules (the API) and /app/schedules (the dashboard page)."""

from __future__ import annotations

from django.urls import re_path

from schedules.pages import schedule_list_page
from schedules.views import (
    ScheduleDetailView,
    ScheduleListView,
    SchedulePauseView,
    ScheduleResumeView,
    ScheduleTriggerView,
)

ID = r"(?P<schedule_id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"

urlpatterns = [
    re_path(r"^schedules/?$", ScheduleListView.as_view(), name="schedule-list"),
    re_path(rf"^schedules/{ID}/?$", ScheduleDetailView.as_view(), name="schedule-detail"),
    re_path(rf"^schedules/{ID}/pause/?$", SchedulePauseView.as_view(), name="schedule-pause"),
    re_path(rf"^schedules/{ID}/resume/?$", ScheduleResumeView.as_view(), name="schedule-resume"),
    re_path(rf"^schedules/{ID}/trigger/?$", ScheduleTriggerView.as_view(), name="schedule-trigger"),
    re_path(r"^app/schedules/?$", schedule_list_page, name="app-schedules"),
]
