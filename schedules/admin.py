"""Schedules in the admin: their timing, policies and runs."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from schedules.models import Schedule, ScheduleRun
from schedules.services import TIMING_FIELDS
from schedules.timing import tick_after


class ScheduleRunInline(admin.TabularInline):
    model = ScheduleRun
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("tick", "action", "job", "manual", "detail", "at")
    readonly_fields = fields
    ordering = ("-tick",)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "spec_text", "overlap", "catchup", "paused", "next_run_at", "last_run_at")
    list_filter = ("paused", "overlap", "catchup")
    search_fields = ("name", "id", "owner__username")
    readonly_fields = ("next_run_at", "buffered_tick", "last_run_at", "created_at", "updated_at")
    inlines = [ScheduleRunInline]

    def save_model(self, request, obj, form, change) -> None:
        # A change of timing or of pause moves the next tick, as the API does.
        if not change or "paused" in form.changed_data or any(f in form.changed_data for f in TIMING_FIELDS):
            obj.next_run_at = None if obj.paused else tick_after(obj, timezone.now())
        super().save_model(request, obj, form, change)
