"""Schedules: a job template submitted on a cron expression (in a time zone) or an interval.

PostgreSQL holds the truth. ``next_run_at`` is the one tick the schedule waits for; the
orchestrator claims it with a conditional UPDATE that moves it on, in the same
transaction that submits the job (with the idempotency key ``schedule:<id>:<tick>``) and
records the run. A second orchestrator, a restart or a leader change at the tick finds
the tick already moved, or rolls back with the job it did not commit.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone as django_timezone


class OverlapPolicy(models.TextChoices):
    """What a tick does while the schedule's previous run is still going (Temporal's names)."""

    SKIP = "skip"  # the tick does not run
    BUFFER_ONE = "buffer_one"  # it runs when the previous one finishes; at most one waits
    ALLOW_ALL = "allow_all"  # it runs alongside
    CANCEL_OTHER = "cancel_other"  # the previous run is cancelled, then it runs


class CatchupPolicy(models.TextChoices):
    """What happens to ticks missed while no orchestrator ran."""

    SKIP = "skip"  # missed ticks are not run; the schedule goes on from the next one
    RUN_ONCE = "run_once"  # the newest missed tick runs once, if within catchup_window


class Schedule(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200, blank=True)
    # The body of POST /jobs, validated like one when saved and again at each tick.
    template = models.JSONField()
    # Exactly one of cron (with timezone) and interval_seconds is set.
    cron = models.CharField(max_length=200, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    overlap = models.CharField(max_length=20, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP)
    catchup = models.CharField(max_length=20, choices=CatchupPolicy.choices, default=CatchupPolicy.SKIP)
    catchup_window = models.PositiveIntegerField(default=3600, help_text="Seconds.")
    paused = models.BooleanField(default=False)
    # The tick the schedule waits for (null while paused).
    next_run_at = models.DateTimeField(null=True, blank=True)
    # A tick held back by buffer_one until the running job finishes.
    buffered_tick = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    # Also the anchor of the interval grid, set before the first save (not auto_now_add).
    created_at = models.DateTimeField(default=django_timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The orchestrator's step: active schedules whose tick is due, soonest first.
            models.Index(fields=["next_run_at"], name="schedule_due", condition=Q(paused=False)),
            # The same step: schedules holding a buffered tick.
            models.Index(fields=["buffered_tick"], name="schedule_buffered", condition=Q(buffered_tick__isnull=False)),
            # GET /schedules and the dashboard page.
            models.Index(fields=["owner", "created_at"], name="schedule_owner_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(interval_seconds__isnull=True) & ~Q(cron=""))
                | (Q(interval_seconds__isnull=False) & Q(cron="")),
                name="schedule_cron_xor_interval",
            ),
            models.CheckConstraint(condition=Q(overlap__in=OverlapPolicy.values), name="schedule_overlap_valid"),
            models.CheckConstraint(condition=Q(catchup__in=CatchupPolicy.values), name="schedule_catchup_valid"),
        ]

    def __str__(self) -> str:
        return self.name or f"schedule {self.id}"

    @property
    def spec_text(self) -> str:
        if self.cron:
            return f"{self.cron} ({self.timezone})"
        return f"every {self.interval_seconds} s"


class RunAction(models.TextChoices):
    STARTED = "started"  # a job was submitted for the tick
    SKIPPED = "skipped"  # the overlap or catch-up policy left the tick out
    BUFFERED = "buffered"  # held until the running job finishes (buffer_one)
    FAILED = "failed"  # the template no longer submits (an agent gone, a quota): see error


class ScheduleRun(models.Model):
    """What one tick of a schedule did; at most one row per tick."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs")
    tick = models.DateTimeField()
    action = models.CharField(max_length=10, choices=RunAction.choices)
    job = models.ForeignKey("jobs.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    manual = models.BooleanField(default=False, help_text="Run now, by hand.")
    detail = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-tick"]
        constraints = [
            # Exactly one outcome per tick, whoever fired it; also the index of a
            # schedule's recent runs, newest first.
            models.UniqueConstraint(fields=["schedule", "tick"], name="schedule_run_tick"),
            models.CheckConstraint(condition=Q(action__in=RunAction.values), name="schedule_run_action_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} {self.tick.isoformat()} {self.action}"
