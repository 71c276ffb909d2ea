"""What users ask of their jobs: submit (validation and idempotency), cancel, retry,
requeue. The state changes themselves are jobs.lifecycle's."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.dispatch import Signal

from core.errors import ApplicationError, QuotaExceeded, Unprocessable
from core.tracing import job_trace_save
from jobs import lifecycle
from jobs.budgets import budget_fields
from jobs.models import JOB_ACTIVE, Job
from jobs.plans import plan_validate
from jobs.reviews.gate_policy import gates_authorize
from jobs.scheduling import concurrency_key_of

# Sent inside the submission's transaction with ``job`` and the submitted ``spec``; a
# receiver may add rows of its own (webhooks: the job's "notify") or refuse the spec with
# an ApplicationError, which rolls the submission back.
job_submitted = Signal()


def request_digest(spec: dict) -> str:
    """A stable fingerprint of a submission, to tell an idempotent replay from a reuse."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def job_submit(*, owner, spec: dict, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Validate and store a job; with an explicit plan its tasks are written and its
    roots dispatched in the same transaction (jobs.lifecycle.job_create).

    Returns ``(job, created)``; ``created`` is False for an idempotent replay (same user,
    same key, same body). The same key with another body is a 422. Nothing is written
    for a job that fails validation. Concurrent submissions with one key make one job:
    the others wait for its insert (the unique index) and answer as replays.
    """
    digest = request_digest(spec)
    if idempotency_key:
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, digest), False

    tasks, budget = job_spec_validate(spec=spec)
    if spec.get("plan") is not None:
        gates_authorize(owner=owner, plan=spec["plan"])

    try:
        with transaction.atomic():
            _check_active_jobs_quota(owner)
            job = lifecycle.job_create(
                owner=owner,
                fields={
                    "requirements": spec.get("requirements", ""),
                    "plan": {"tasks": tasks} if tasks is not None else None,
                    "review_plan": spec.get("review_plan", False),
                    **budget,
                    "priority": spec.get("priority", 0),
                    **_concurrency_fields(owner, spec.get("concurrency")),
                    "metadata": spec.get("metadata") or {},
                    "remember": spec.get("remember", False),
                    "idempotency_key": idempotency_key or None,
                    "request_digest": digest,
                },
            )
            # Later steps (dependents dispatched by workers, retries by the orchestrator)
            # join this request's trace (core.tracing); a no-op when tracing is off.
            job_trace_save(job.id)
            # Listeners add to the job in its own transaction (webhooks: a per-job
            # "notify"); one that refuses the spec rolls the submission back.
            job_submitted.send(sender=Job, job=job, spec=spec)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        if not idempotency_key:
            raise
        existing = Job.objects.get(owner=owner, idempotency_key=idempotency_key)
        return _replay(existing, digest), False
    return job, True


def _concurrency_fields(owner, concurrency: dict | None) -> dict:
    if not concurrency:
        return {}
    return {
        "concurrency_key": concurrency_key_of(owner.pk, concurrency["key"]),
        "concurrency_limit": concurrency["limit"],
    }


def job_spec_validate(*, spec: dict, prefix: str = "") -> tuple[list[dict] | None, dict]:
    """The checks of a submission beyond its shape (plan, planner, budget), shared by
    job_submit and by schedules, whose job template must pass them when it is saved.
    Returns the plan's tasks (None: the planner plans) and the budget's Job columns;
    ``prefix`` puts the error paths under a field of a bigger body (``"job."``)."""
    plan = spec.get("plan")
    if plan is None and not settings.AGENTBUS_LLM_BASE_URL:
        # The planner agent (an LLM) turns requirements into a plan; it is not
        # configured in this deployment, so an explicit plan is required.
        raise ApplicationError(
            "A plan is required: no planner agent is configured to plan from requirements alone.",
            code="plan_required",
            fields={f"{prefix}plan": ["required when no planner is configured"]},
        )
    if plan is None and not spec.get("requirements", "").strip():
        raise ApplicationError(
            "Give requirements for the planner to plan from, or a plan.",
            code="requirements_required",
            fields={f"{prefix}requirements": ["required when there is no plan"]},
        )
    # Without a plan, the orchestrator has the planner agent make one (orchestration.planner).
    tasks = plan_validate(plan, prefix=f"{prefix}plan") if plan is not None else None
    return tasks, budget_fields(spec.get("budget"), tasks=tasks)


def _check_active_jobs_quota(owner) -> None:
    """Refuse a new job while the owner already has AGENTBUS_MAX_ACTIVE_JOBS_PER_USER
    unfinished ones (0 = no limit), so one user cannot fill the queues for everyone.

    The owner's row is locked first, so concurrent submissions by the same user are
    counted one after the other and cannot both slip under the limit.
    """
    limit = settings.AGENTBUS_MAX_ACTIVE_JOBS_PER_USER
    if not limit:
        return
    list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True))
    # Reads the job_owner_status_created index.
    active = Job.objects.filter(owner=owner, status__in=JOB_ACTIVE).count()
    if active >= limit:
        raise QuotaExceeded(
            f"You already have {active} unfinished jobs, the most allowed at once ({limit}); "
            "submit again when one has finished, or cancel one.",
            code="too_many_active_jobs",
        )


def _replay(job: Job, digest: str) -> Job:
    if job.request_digest != digest:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
            fields={"Idempotency-Key": ["already used with a different body"]},
        )
    return job


def job_cancel(*, job: Job) -> Job:
    """Cancel a job: its tasks stop (running ones at their next heartbeat), its reviews
    close. A finished job is a 409."""
    return lifecycle.job_cancel(job_id=job.pk)


def job_retry_failed(*, job: Job) -> Job:
    """Run a failed or cancelled job's unfinished work again (jobs.lifecycle)."""
    return lifecycle.job_retry_failed(job_id=job.pk)


def job_requeue(*, job: Job) -> int:
    """Send a job's queued messages again and run its waiting retries now (jobs.lifecycle)."""
    return lifecycle.job_requeue(job_id=job.pk)
