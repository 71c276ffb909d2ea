"""The RQ entry point: run one attempt of one task.

RQ calls ``task_run`` with ids only (the message is JSON and signed, see core.queue);
everything else is read from PostgreSQL, and every outcome is written back through
jobs.lifecycle, conditional on this attempt still being the running one.
"""

from __future__ import annotations

import json
import logging
import time
import traceback

from django.db import close_old_connections
from pybreaker import CircuitBreakerError
from redis.exceptions import RedisError
from rq import get_current_job

from agents.breakers import breaker_wait_seconds
from agents.errors import TaskInterrupted
from agents.kinds import IN_PROCESS_KINDS
from agents.limits import slot_acquire, slot_release
from agents.registry import AgentSpec, NonRetryableError, agent_get
from agents.runners import agent_run
from core.logging import log_context
from core.metrics import task_timed
from core.queue import TIMEOUT_GRACE, tasks_enqueue
from core.tracing import dispatch_traceparents, task_span
from jobs.lifecycle import Succeeded, task_ask_human, task_claim, task_defer, task_fail_attempt, task_succeed
from jobs.scheduling import admit_after_attempt
from workers.context import AgentContext, HumanInputRequired
from workers.services import task_status_now, task_upstream_outputs
from workers.supervision import supervise

logger = logging.getLogger(__name__)


def task_run(task_id: str, attempt: int, signature: str, trace: str = "") -> None:
    """Run one attempt, then the tasks handed to this worker.

    1. Claim and run the attempt (``attempt_run``).
    2. If its success made a dependent ready on this worker's queue, the lifecycle hands
       it back instead of sending it to Redis; otherwise, if tasks wait for this queue in
       PostgreSQL, the slot this attempt freed admits the next one by policy
       (jobs.scheduling; a success does it in its own transaction) and this worker
       takes it. Run it next here, in its own span,
       while the RQ job's time limit leaves room for its timeout.
    3. A task there is no room for is sent to its queue as usual.
    """
    # ``trace`` (a traceparent) is used by SignedJob around this call (core.tracing).
    # A long-lived worker must drop connections the database closed or that outlived
    # CONN_MAX_AGE, as Django does around each request.
    close_old_connections()
    current = get_current_job()
    worker = current.worker_name if current is not None and current.worker_name else "worker"
    queue = current.origin if current is not None else None
    started = time.monotonic()
    outcome = attempt_run(task_id, attempt, worker=worker, queue=queue)
    while True:
        handoff = outcome.handoff if outcome else None
        if handoff is None and not (outcome and outcome.admitted):
            handoff = admit_after_attempt(queue)
        if handoff is None:
            return
        room = (current.timeout or 0) - (time.monotonic() - started) - TIMEOUT_GRACE / 2
        if handoff.timeout > room:
            tasks_enqueue([handoff])
            return
        traceparent = dispatch_traceparents([handoff]).get(handoff.task_id, "")
        with (
            task_span(handoff.task_id, handoff.attempt, traceparent),
            log_context(task_id=handoff.task_id, attempt=handoff.attempt),
        ):
            outcome = attempt_run(handoff.task_id, handoff.attempt, worker=worker, queue=queue)


def attempt_run(task_id: str, attempt: int, *, worker: str, queue: str | None) -> Succeeded | None:
    """Claim and run one attempt and record its outcome; returns the success (with the
    task it handed to this worker, if any), None for any other outcome."""
    task = task_claim(task_id=task_id, attempt=attempt, worker=worker)
    if task is None:
        logger.info("task %s attempt %s is no longer queued; message dropped", task_id, attempt)
        return None
    spec = agent_get(task.agent)
    if spec is None or (spec.kind in IN_PROCESS_KINDS and spec.handler is None):
        task_fail_attempt(task=task, error=f"agent '{task.agent}' is not registered in worker {worker}", retryable=True)
        return None
    # Waiting for an open circuit or a free slot does not spend the attempt. An open
    # circuit is found by the agent's call itself, through its breaker, before anything
    # is sent (CircuitBreakerError, deferred in attempt_settle): no Redis read of its own
    # on every task's way to the endpoint. (A Python agent's circuit guards only its
    # ctx.llm calls, which defer the same way.)
    if not slot_acquire(spec, task_id=task_id, hold_seconds=task.timeout):
        task_defer(task=task, delay=1.0, reason=f"agent '{spec.name}' runs its limit of {spec.concurrency} tasks")
        return None

    ctx = AgentContext(task=task, upstream=task_upstream_outputs(task=task))
    try:
        return attempt_settle(spec, task, ctx, worker=worker, queue=queue)
    finally:
        # After the outcome was committed, so a watcher told "ended" finds the output.
        stream_end(ctx)


def attempt_settle(spec: AgentSpec, task, ctx: AgentContext, *, worker: str, queue: str | None) -> Succeeded | None:
    """Run the agent and record what came of it; returns the success, if it was one."""
    task_id, attempt = str(task.id), task.attempt
    try:
        with (
            log_context(job_id=task.job_id),
            supervise(task_id=task.id, attempt=attempt, timeout=task.timeout),
            task_timed(agent=spec.name, attempt=attempt, max_attempts=task.max_attempts),
        ):
            output = agent_call(spec, ctx)
    except TaskInterrupted as exc:
        if exc.reason == "timeout":
            task_fail_attempt(task=task, error=f"timed out after {task.timeout}s", retryable=True)
        else:
            logger.info("task %s attempt %s stopped: %s", task_id, attempt, exc.reason)
        return None
    except HumanInputRequired as exc:
        # The attempt ends here without an outcome; it runs again once answered.
        if not task_ask_human(task=task, question=exc.question, options=exc.options):
            logger.info("task %s attempt %s asked a question but is no longer running", task_id, attempt)
        return None
    except NonRetryableError as exc:
        task_fail_attempt(task=task, error=f"{type(exc).__name__}: {exc}", retryable=False)
        return None
    except CircuitBreakerError:
        # The circuit is open (opened by any worker): the call was not made.
        task_defer(task=task, delay=breaker_wait_seconds(spec), reason=f"circuit of agent '{spec.name}' is open")
        return None
    except SystemExit:
        # A cold shutdown (RQ raises SystemExit on a second SIGTERM/SIGINT) stops the agent
        # mid-way: hand the attempt back now, without spending it, rather than leave the
        # task to the heartbeat timeout.
        task_defer(task=task, delay=1.0, reason=f"worker {worker} shut down before the task finished")
        raise
    except Exception as exc:  # an agent's failure is data, not a worker crash
        task_fail_attempt(task=task, error=_describe(exc), retryable=True)
        return None
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        task_fail_attempt(task=task, error=f"the agent's output is not JSON: {exc}", retryable=False)
        return None
    try:
        return task_succeed(task=task, output=output, spawn=ctx.spawned, handoff_queue=queue)
    except NonRetryableError as exc:  # an invalid spawn, or one over the job's budget
        task_fail_attempt(task=task, error=str(exc), retryable=False)
    return None


def stream_end(ctx: AgentContext) -> None:
    """Close the attempt's stream, if it said anything, with the task's status after it
    (``succeeded``; ``pending`` when a retry is scheduled; ``failed``, ...)."""
    if not ctx.stream_of_attempt.opened:
        return
    status = task_status_now(task_id=ctx.task_id)
    try:
        ctx.stream_of_attempt.end(status)
    except RedisError:
        logger.warning("task %s attempt %s: its stream's end marker was lost", ctx.task_id, ctx.attempt, exc_info=True)


def agent_call(spec: AgentSpec, ctx: AgentContext):
    """Run the agent by its kind, then free its concurrency slot."""
    try:
        return agent_run(spec, ctx)
    finally:
        slot_release(spec, task_id=ctx.task_id)


def _describe(exc: Exception) -> str:
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
    return f"{type(exc).__name__}: {exc}\n{''.join(frames)[-2000:]}"
