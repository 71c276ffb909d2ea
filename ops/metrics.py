"""GET /metrics on the web process: its own metrics, and the state of the deployment
(jobs and tasks by status, queues, workers, the leader, circuits and rate limits) read
at scrape time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily, Metric
from rq import Worker

from agents.breakers import breaker_status
from agents.rate_limits import rate_state
from agents.registry import agents_all
from core.heartbeats import leader_identity
from core.metrics import metrics_collector_register, metrics_render
from core.queue import queue_get
from core.redis import redis_client
from jobs.models import Job, JobStatus, Task, TaskStatus
from jobs.scheduling import WAIT_REASONS, waiting_by_reason


def _jobs_and_tasks() -> Iterable[Metric]:
    for model, statuses, name, what in (
        (Job, JobStatus.values, "agentbus_jobs", "Jobs"),
        (Task, TaskStatus.values, "agentbus_tasks", "Tasks"),
    ):
        counts = dict(model.objects.order_by().values_list("status").annotate(n=Count("pk")))
        family = GaugeMetricFamily(name, f"{what} by status.", labels=["status"])
        for status in statuses:  # every status, zeros included, so a series never vanishes
            family.add_metric([status], counts.get(status, 0))
        yield family


def _queues() -> Iterable[Metric]:
    depth = GaugeMetricFamily("agentbus_queue_depth", "Messages waiting in each queue.", labels=["queue"])
    oldest = GaugeMetricFamily(
        "agentbus_queue_oldest_age_seconds",
        "Age of the oldest message waiting in each queue (0 when empty).",
        labels=["queue"],
    )
    now = datetime.now(UTC)
    for name in settings.AGENTBUS_QUEUES:
        queue = queue_get(name)
        depth.add_metric([name], queue.count)
        age = 0.0
        first = queue.get_job_ids(0, 1)  # RQ appends at the tail: the head is the oldest
        job = queue.fetch_job(first[0]) if first else None
        if job is not None and job.enqueued_at is not None:
            enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=UTC)
            age = max(0.0, (now - enqueued).total_seconds())
        oldest.add_metric([name], age)
    yield depth
    yield oldest
    workers = GaugeMetricFamily("agentbus_workers", "RQ workers registered in Redis, by state.", labels=["state"])
    states: dict[str, int] = {"idle": 0, "busy": 0}
    for worker in Worker.all(connection=redis_client()):
        status = worker.get_state()
        state = str(getattr(status, "value", status))
        states[state] = states.get(state, 0) + 1
    for state, n in states.items():
        workers.add_metric([state], n)
    yield workers


def _orchestrator() -> Iterable[Metric]:
    leader = GaugeMetricFamily("agentbus_orchestrator_leader", "1 while an orchestrator holds the leader lock.")
    leader.add_metric([], 1 if leader_identity() else 0)
    yield leader


def _circuits() -> Iterable[Metric]:
    # One series per agent and state, 1 for the state it is in, so an alert can say
    # "open" and a dashboard can stack them (deploy/k8s/base/monitoring).
    family = GaugeMetricFamily(
        "agentbus_agent_circuit", "Circuit breaker state of each agent.", labels=["agent", "state"]
    )
    for spec in agents_all():
        state = breaker_status(spec)["state"]
        for candidate in ("closed", "open", "half-open"):
            family.add_metric([spec.name, candidate], 1 if state == candidate else 0)
    yield family


def _rate_limits() -> Iterable[Metric]:
    # Only agents with a limit, each one EVAL: the window's counts beside the limits, so
    # a dashboard shows how close an agent runs to its provider's quota.
    families = {
        "requests": GaugeMetricFamily(
            "agentbus_agent_rate_limit_requests",
            "Attempts dispatched to each rate-limited agent in the last window (a minute).",
            labels=["agent"],
        ),
        "tokens": GaugeMetricFamily(
            "agentbus_agent_rate_limit_tokens",
            "Tokens each rate-limited agent's LLM calls reported in the last window (a minute).",
            labels=["agent"],
        ),
        "rpm": GaugeMetricFamily(
            "agentbus_agent_rate_limit_rpm", "Declared requests per minute of each agent.", labels=["agent"]
        ),
        "tpm": GaugeMetricFamily(
            "agentbus_agent_rate_limit_tpm", "Declared LLM tokens per minute of each agent.", labels=["agent"]
        ),
        "wait": GaugeMetricFamily(
            "agentbus_agent_rate_limit_wait_seconds",
            "Seconds until each rate-limited agent's window admits one more request (0: now).",
            labels=["agent"],
        ),
    }
    for spec in agents_all():
        state = rate_state(spec)
        if state is None:
            continue
        families["requests"].add_metric([spec.name], state["requests_last_minute"])
        families["tokens"].add_metric([spec.name], state["tokens_last_minute"])
        families["wait"].add_metric([spec.name], state["wait_seconds"])
        if state["rpm"]:
            families["rpm"].add_metric([spec.name], state["rpm"])
        if state["tpm"]:
            families["tpm"].add_metric([spec.name], state["tpm"])
    yield from families.values()


def _waiting() -> Iterable[Metric]:
    family = GaugeMetricFamily(
        "agentbus_tasks_waiting",
        "Queued tasks waiting in PostgreSQL for a worker, by queue and why (jobs.scheduling).",
        labels=["queue", "reason"],
    )
    counts = waiting_by_reason()
    for name in settings.AGENTBUS_QUEUES:  # every reason, zeros included
        for reason in WAIT_REASONS:
            family.add_metric([name, reason], counts.pop((name, reason), 0))
    for (name, reason), n in counts.items():  # a queue outside AGENTBUS_QUEUES
        family.add_metric([name, reason], n)
    yield family


metrics_collector_register("jobs_and_tasks", _jobs_and_tasks)
metrics_collector_register("waiting", _waiting)
metrics_collector_register("queues", _queues)
metrics_collector_register("orchestrator", _orchestrator)
metrics_collector_register("circuits", _circuits)
metrics_collector_register("rate_limits", _rate_limits)


def metrics_view(request) -> HttpResponse:
    """GET /metrics for Prometheus. Scrapers send AGENTBUS_METRICS_TOKEN as
    ``Authorization: Bearer <token>``; without a token configured it is open only with
    DEBUG on (a laptop), since the figures describe every user's work."""
    expected = settings.AGENTBUS_METRICS_TOKEN
    if not expected and not settings.DEBUG:
        return JsonResponse(
            {"error": "not_configured", "detail": "Set AGENTBUS_METRICS_TOKEN to scrape /metrics with DEBUG off."},
            status=403,
        )
    if expected:
        given = request.headers.get("Authorization", "")
        if not constant_time_compare(given, f"Bearer {expected}"):
            return JsonResponse(
                {"error": "not_authenticated", "detail": "A valid metrics token is required."}, status=401
            )
    return HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)
