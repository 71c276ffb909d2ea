"""Prometheus metrics: what each process measures, and the state every scrape reads.

Two kinds, kept apart on purpose:

* Process metrics (counters, histograms) are recorded where things happen: task
  durations and retries in the worker, published events in whichever process commits
  them. Each process serves its own at ``AGENTBUS_METRICS_PORT`` (orchestrator, workers;
  ``metrics_serve``), and the web process at ``GET /metrics`` with django-prometheus'
  request metrics. Prometheus adds them up across processes, as it does for replicas.
* State gauges (jobs and tasks by status, queue depth, age of the oldest queued task,
  workers, the orchestrator leader) are facts about PostgreSQL and Redis, not about a
  process; they are read at scrape time by the web's ``/metrics`` only, so N workers do
  not run the same queries N times.

Other parts of the product add their own state (review waiting time, circuit state)
with ``metrics_collector_register``: a function returning metric families, called on
each scrape of ``/metrics``; one that fails is logged and skipped, never a failed scrape.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

# --- process metrics ----------------------------------------------------------------

TASK_DURATION = Histogram(
    "agentbus_task_duration_seconds",
    "Time an agent spent on one attempt of a task, by agent and outcome.",
    ["agent", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
TASK_RETRIES = Counter(
    "agentbus_task_retries_total",
    "Failed attempts that will be retried (errors and timeouts), by agent.",
    ["agent"],
)
EVENTS_PUBLISHED = Counter(
    "agentbus_events_published_total",
    "Job events committed and pushed to live listeners, by type.",
    ["type"],
)
JOBS_FINISHED = Counter(
    "agentbus_jobs_finished_total",
    "Jobs that reached a final status, by status.",
    ["status"],
)

_FINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled")


@contextlib.contextmanager
def task_timed(*, agent: str, attempt: int, max_attempts: int):
    """Time an agent's run; the outcome is read from how the block ends.

    ``succeeded`` when it returns, ``interrupted`` when the supervisor stopped it
    (timeout or cancel), ``error`` otherwise; an error or timeout on an attempt that is
    not the last counts as a retry. Questions to a human end the block as ``suspended``.
    """
    started = time.perf_counter()
    outcome = "succeeded"
    try:
        yield
    except BaseException as exc:
        name = type(exc).__name__
        if name == "TaskInterrupted":
            outcome = "timeout" if getattr(exc, "reason", "") == "timeout" else "interrupted"
        elif name == "HumanInputRequired":
            outcome = "suspended"
        elif name == "NonRetryableError":
            outcome = "failed"
        else:
            outcome = "error"
        raise
    finally:
        TASK_DURATION.labels(agent, outcome).observe(time.perf_counter() - started)
        if outcome in ("error", "timeout") and attempt < max_attempts:
            TASK_RETRIES.labels(agent).inc()


def events_observe(messages: Iterable[dict]) -> None:
    """Count published events (called by jobs.events.events_publish, after commit)."""
    for message in messages:
        EVENTS_PUBLISHED.labels(message["type"]).inc()
        if message["type"] == "job.status" and message.get("status") in _FINAL_JOB_STATUSES:
            JOBS_FINISHED.labels(message["status"]).inc()


def metrics_serve(port: int | None, *, addr: str = "0.0.0.0") -> bool:
    """Serve this process's metrics on ``port`` (orchestrator, workers); None: don't.

    A port already taken (two workers on one host with the same setting) is logged and
    skipped: metrics must never keep a worker from working.
    """
    if not port:
        return False
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        logger.warning("metrics port %s unavailable (%s); this process serves no metrics", port, exc)
        return False
    logger.info("metrics on http://%s:%s/metrics", addr, port)
    return True


# --- state gauges, read at scrape time ---------------------------------------------

_state_collectors: list[tuple[str, Callable[[], Iterable[Metric]]]] = []


def metrics_collector_register(name: str, collect: Callable[[], Iterable[Metric]]) -> None:
    """Add state read on each scrape of the web's /metrics (idempotent by name)."""
    global _state_collectors
    _state_collectors = [(n, c) for n, c in _state_collectors if n != name] + [(name, collect)]


def _jobs_and_tasks() -> Iterable[Metric]:
    from django.db.models import Count

    from jobs.models import Job, JobStatus, Task, TaskStatus

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
    from datetime import datetime

    from rq import Worker

    from agentbus_site.redis_connection import redis_client
    from workers.queue import queue_get

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
    from orchestration.leader import leader_identity

    leader = GaugeMetricFamily("agentbus_orchestrator_leader", "1 while an orchestrator holds the leader lock.")
    leader.add_metric([], 1 if leader_identity() else 0)
    yield leader


metrics_collector_register("jobs_and_tasks", _jobs_and_tasks)
metrics_collector_register("queues", _queues)
metrics_collector_register("orchestrator", _orchestrator)


class _StateCollector:
    def collect(self) -> Iterable[Metric]:
        for name, collect in _state_collectors:
            try:
                yield from list(collect())
            except Exception:
                logger.exception("metrics collector %r failed; its metrics are missing from this scrape", name)


_state_registry = CollectorRegistry(auto_describe=False)
_state_registry.register(_StateCollector())


def metrics_render() -> bytes:
    """The web's /metrics: this process's metrics, then the state gauges."""
    return generate_latest(REGISTRY) + generate_latest(_state_registry)


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
