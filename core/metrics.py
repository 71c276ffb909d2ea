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

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import Metric

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
    not the last counts as a retry. Questions to a human end the block as ``suspended``,
    an open circuit (the call not made) as ``deferred``.
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
        elif name == "CircuitBreakerError":
            outcome = "deferred"  # the circuit is open: not called, the attempt not spent
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
