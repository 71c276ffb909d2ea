"""Job, Task and the job's append-only event log.

PostgreSQL is the source of truth: every decision the orchestrator and the workers take
is a conditional UPDATE on these rows, so a lost Redis message can always be rebuilt
from here.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    SUBMITTED = "submitted"
    PLANNING = "planning"
    AWAITING_REVIEW = "awaiting_review"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_ACTIVE = (JobStatus.SUBMITTED, JobStatus.PLANNING, JobStatus.AWAITING_REVIEW, JobStatus.RUNNING)
JOB_TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class TaskStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_REVIEW = "awaiting_review"
    AWAITING_INPUT = "awaiting_input"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


TASK_TERMINAL = (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED)


class ReviewMode(models.TextChoices):
    NONE = "none"
    BEFORE = "before"
    AFTER = "after"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    requirements = models.TextField(blank=True)
    plan = models.JSONField(null=True, blank=True, help_text="The plan as submitted (or as planned).")
    review_plan = models.BooleanField(default=False)
    # Who runs first (jobs.scheduling): the default priority of the job's tasks, and a
    # concurrency key ("customer-42", scoped to the owner) capping its tasks in flight.
    priority = models.SmallIntegerField(default=0)
    concurrency_key = models.CharField(max_length=100, blank=True, db_default="")
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Store the job's final outputs as memories of its owner when it succeeds (memory/).
    remember = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.SUBMITTED)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_digest = models.CharField(max_length=64, blank=True)
    # Sequence number of the newest event; bumped atomically by jobs.events.
    last_seq = models.PositiveIntegerField(default=0)
    # The orchestrator has acted on every event up to here. last_seq > advanced_seq on an
    # active job means something happened that it has not seen (its message may be lost).
    advanced_seq = models.PositiveIntegerField(default=0)
    # Budget (null: unlimited). A job that would exceed one stops with a clear reason.
    max_tasks = models.PositiveIntegerField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    # LLM tokens spent by the job's tasks (the planner's included), summed atomically.
    tokens_used = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When retention purged the job's events, outputs and artifacts (retention/); its row,
    # its tasks' statuses and timings stay, and the API answers 410 with them.
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # retention.services: finished jobs not purged yet, oldest first; purged and
            # active jobs are outside the index.
            models.Index(
                fields=["finished_at"],
                name="job_purgeable",
                condition=Q(purged_at__isnull=True, status__in=JOB_TERMINAL),
            ),
            # GET /jobs: the caller's jobs, newest first, optionally by status.
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["owner", "status", "-created_at"], name="job_owner_status_created"),
            # The orchestrator's reconciler scans active jobs only; finished history is
            # outside this index, so the scan does not grow with the table.
            models.Index(
                fields=["created_at"],
                name="job_active",
                condition=Q(status__in=JOB_ACTIVE),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_owner_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in JOB_TERMINAL


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="tasks")
    key = models.CharField(max_length=100)
    agent = models.CharField(max_length=100)
    queue = models.CharField(max_length=100)
    input = models.JSONField(default=dict, blank=True)
    # Keys of the tasks in the same job that must succeed before this one runs.
    depends_on = models.JSONField(default=list, blank=True)
    review = models.CharField(max_length=10, choices=ReviewMode.choices, default=ReviewMode.NONE)
    allow_failure = models.BooleanField(default=False)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    timeout = models.PositiveIntegerField(default=300, help_text="Seconds per attempt.")
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    # The attempt now queued or running (1-based); 0 before the first dispatch.
    attempt = models.PositiveSmallIntegerField(default=0)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    progress = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=200, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # LLM tokens spent by this task over all its attempts, and their breakdown.
    tokens_used = models.PositiveIntegerField(default=0)
    usage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Scheduling (jobs.scheduling). A queued task waits in PostgreSQL until it is sent to
    # its RQ queue (``sent_at``); ``wait_reason`` says why it has not been yet.
    # (Database defaults too: bulk loads in SQL, as bench/ and tests do, need none of them.)
    priority = models.SmallIntegerField(default=0, db_default=0)
    fair_key = models.CharField(max_length=140, blank=True, db_default="")
    concurrency_key = models.CharField(max_length=140, blank=True, db_default="")
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    wait_reason = models.CharField(max_length=20, blank=True, db_default="")

    class Meta:
        ordering = ["created_at", "key"]
        indexes = [
            # Scheduling: the waiting line of each queue, and what is in flight on it.
            models.Index(
                fields=["queue", "queued_at"],
                name="task_waiting",
                condition=Q(status=TaskStatus.QUEUED, sent_at__isnull=True),
            ),
            # Each fair key's line on a queue, in its order: an admission reads the first
            # few tasks of each key, however long the lines are.
            models.Index(
                fields=["queue", "fair_key", "-priority", "queued_at", "id"],
                name="task_line",
                condition=Q(status=TaskStatus.QUEUED, sent_at__isnull=True),
            ),
            # In flight (sent or running: a claim sets sent_at if it was not) by sent_at,
            # so counting a queue's tasks in flight skips its waiting ones (sent_at NULL).
            models.Index(
                fields=["queue", "sent_at"],
                name="task_active_queue",
                condition=Q(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING]),
            ),
            # Scheduling: a concurrency key's tasks in flight, and a fair key's recent sends.
            models.Index(
                fields=["concurrency_key", "sent_at"],
                name="task_concurrency_key",
                condition=Q(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING]) & ~Q(concurrency_key=""),
            ),
            models.Index(fields=["fair_key", "sent_at"], name="task_fair_sent", condition=Q(sent_at__isnull=False)),
            # Orchestrator: retries whose backoff has run out.
            models.Index(
                fields=["next_attempt_at"],
                name="task_retry_due",
                condition=Q(status=TaskStatus.PENDING, next_attempt_at__isnull=False),
            ),
            # Reconciler: sent tasks whose message may have been lost.
            models.Index(
                fields=["sent_at"], name="task_sent", condition=Q(status=TaskStatus.QUEUED, sent_at__isnull=False)
            ),
            # Reconciler: running tasks whose worker stopped beating.
            models.Index(fields=["heartbeat_at"], name="task_running", condition=Q(status=TaskStatus.RUNNING)),
        ]
        constraints = [
            # Also the index for the orchestrator's per-job task load and dependency lookups.
            models.UniqueConstraint(fields=["job", "key"], name="task_job_key"),
            models.CheckConstraint(condition=Q(status__in=TaskStatus.values), name="task_status_valid"),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="task_max_attempts_positive"),
        ]

    def __str__(self) -> str:
        return f"task {self.key} of {self.job_id} ({self.status})"


class JobEvent(models.Model):
    """One state change of a job or of one of its tasks; never updated, never deleted."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=50)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    status = models.CharField(max_length=20, blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["job", "seq"]
        constraints = [
            # GET /jobs/{id}/events?after=N and websocket replay read by this index.
            models.UniqueConstraint(fields=["job", "seq"], name="event_job_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type} {self.status}"

    def as_message(self) -> dict:
        """The shape sent to API clients and websockets."""
        message = {
            "seq": self.seq,
            "type": self.type,
            "job": str(self.job_id),
            "at": self.at.isoformat(),
        }
        if self.task_id:
            message["task"] = str(self.task_id)
        if self.status:
            message["status"] = self.status
        message.update(self.data)
        return message


# --- human in the loop: review gates (services in jobs/reviews.py) -----------------------


class ReviewKind(models.TextChoices):
    PLAN = "plan"  # the job's plan, before any task runs
    BEFORE = "before"  # a task's input, before it runs
    AFTER = "after"  # a task's output, before its dependents see it
    QUESTION = "question"  # an agent asked a human mid-task


class ReviewStatus(models.TextChoices):
    PENDING = "pending"
    DECIDED = "decided"
    # Closed without a human: its deadline passed (the default outcome was applied), or
    # the job finished or was cancelled while it waited.
    EXPIRED = "expired"


class ReviewDecision(models.TextChoices):
    APPROVE = "approve"
    EDIT = "edit"
    REJECT = "reject"
    RESPOND = "respond"
    FAIL = "fail"  # only as a deadline's default outcome: the job fails


class ReviewDefault(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"
    FAIL = "fail"


class Review(models.Model):
    """A gate waiting for (or decided by) a human. Its history is in ReviewAction and in
    the job's event log."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="reviews")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, null=True, blank=True, related_name="reviews")
    kind = models.CharField(max_length=10, choices=ReviewKind.choices)
    status = models.CharField(max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.PENDING)
    # The task attempt whose output (after) or question this review is about.
    attempt = models.PositiveSmallIntegerField(default=0)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="assigned_reviews"
    )
    reviewer_group = models.ForeignKey(
        "auth.Group", on_delete=models.SET_NULL, null=True, blank=True, related_name="reviews"
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="claimed_reviews"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    default_outcome = models.CharField(max_length=10, choices=ReviewDefault.choices, default=ReviewDefault.REJECT)
    reminded_at = models.DateTimeField(null=True, blank=True)
    # What the human is asked to look at: the plan, the task's input, its output, or
    # ``{"question", "options"}``.
    proposed = models.JSONField(null=True, blank=True)
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices, blank=True)
    # The edited plan/input/output, or ``{"answer": ...}`` for a question.
    decided_value = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="decided_reviews"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # GET /reviews?status=pending and the inbox page: newest pending first.
            models.Index(fields=["status", "-created_at"], name="review_status_created"),
            # The orchestrator's deadline step scans pending reviews with a deadline only.
            models.Index(
                fields=["deadline"],
                name="review_pending_deadline",
                condition=Q(status=ReviewStatus.PENDING, deadline__isnull=False),
            ),
            # Gate checks and the agent's context: a task's reviews.
            models.Index(fields=["task", "kind"], name="review_task_kind"),
        ]
        constraints = [
            # A task waits on at most one gate at a time; a job's plan on at most one.
            models.UniqueConstraint(
                fields=["task"], condition=Q(status=ReviewStatus.PENDING), name="review_one_pending_per_task"
            ),
            models.UniqueConstraint(
                fields=["job"],
                condition=Q(status=ReviewStatus.PENDING, kind=ReviewKind.PLAN),
                name="review_one_pending_plan_per_job",
            ),
            models.CheckConstraint(condition=Q(kind__in=ReviewKind.values), name="review_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=ReviewStatus.values), name="review_status_valid"),
            models.CheckConstraint(
                condition=Q(kind=ReviewKind.PLAN, task__isnull=True)
                | (~Q(kind=ReviewKind.PLAN) & Q(task__isnull=False)),
                name="review_task_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} review {self.id} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == ReviewStatus.PENDING


class ReviewAction(models.Model):
    """The audit trail of a review: who did what, when, and what it changed."""

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="actions")
    # Null when the orchestrator acted (a deadline's default outcome, a reminder).
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    action = models.CharField(max_length=20)  # opened, claimed, released, decided, expired, reminded, closed
    decision = models.CharField(max_length=10, blank=True)
    comment = models.TextField(blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["review", "at", "id"]

    def __str__(self) -> str:
        return f"{self.action} {self.decision}".strip()


def artifact_path(artifact: Artifact, filename: str) -> str:
    # The name a user chose is metadata only; the stored path never comes from it.
    return f"artifacts/{artifact.job_id}/{uuid.uuid4().hex}"


class Artifact(models.Model):
    """A file an agent wrote for its task (``ctx.artifact(...)``), stored through
    Django's storage API and downloadable by the job's owner."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100, default="application/octet-stream")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    file = models.FileField(upload_to=artifact_path, max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "name"]
        constraints = [
            # One file per name per task: a retry that writes it again replaces it.
            models.UniqueConstraint(fields=["task", "name"], name="artifact_task_name"),
        ]
        # GET /jobs/{id}/results lists a job's artifacts by this index.
        indexes = [models.Index(fields=["job", "created_at"], name="artifact_job_created")]

    def __str__(self) -> str:
        return f"artifact {self.name} of {self.task_id}"


class SchedulingWeight(models.Model):
    """An operator's weight for a user's (or a group's members') fair share of the
    workers: a user of weight 2 is served twice as much as one of weight 1 while both
    have work waiting (jobs.scheduling). Without a row, a user weighs 1; a user in
    several weighted groups takes the largest."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="scheduling_weight"
    )
    group = models.OneToOneField(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="scheduling_weight"
    )
    weight = models.PositiveIntegerField(default=1, help_text="Relative share, 1 to 1000.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False)),
                name="scheduling_weight_user_or_group",
            ),
            models.CheckConstraint(condition=Q(weight__gte=1, weight__lte=1000), name="scheduling_weight_range"),
        ]

    def __str__(self) -> str:
        return f"weight {self.weight} for {self.user or self.group}"
