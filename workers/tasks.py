"""The RQ entry point: run one attempt of one task.

RQ calls ``task_run`` with ids only (the message is JSON and signed, see workers.queue);
everything else is read from PostgreSQL, and every outcome is written back through
workers.services, conditional on this attempt still being the running one.
"""

from __future__ import annotations

import json
import logging
import traceback

from django.db import close_old_connections
from rq import get_current_job

from jobs.reviews import task_ask_human
from workers.context import AgentContext, HumanInputRequired
from workers.registry import NonRetryableError, agent_get
from workers.services import task_claim, task_fail_attempt, task_succeed, task_upstream_outputs
from workers.supervision import TaskInterrupted, supervise

logger = logging.getLogger(__name__)


def task_run(task_id: str, attempt: int, signature: str) -> None:
    # A long-lived worker must drop connections the database closed or that outlived
    # CONN_MAX_AGE, as Django does around each request.
    close_old_connections()
    current = get_current_job()
    worker = current.worker_name if current is not None and current.worker_name else "worker"
    task = task_claim(task_id=task_id, attempt=attempt, worker=worker)
    if task is None:
        logger.info("task %s attempt %s is no longer queued; message dropped", task_id, attempt)
        return
    spec = agent_get(task.agent)
    if spec is None or spec.handler is None:
        task_fail_attempt(task=task, error=f"agent '{task.agent}' is not registered in worker {worker}", retryable=True)
        return

    ctx = AgentContext(task=task, upstream=task_upstream_outputs(task=task))
    try:
        with supervise(task_id=task.id, attempt=attempt, timeout=task.timeout):
            output = spec.handler(ctx)
    except TaskInterrupted as exc:
        if exc.reason == "timeout":
            task_fail_attempt(task=task, error=f"timed out after {task.timeout}s", retryable=True)
        else:
            logger.info("task %s attempt %s stopped: %s", task_id, attempt, exc.reason)
        return
    except HumanInputRequired as exc:
        # The attempt ends here without an outcome; it runs again once answered.
        if not task_ask_human(task=task, question=exc.question, options=exc.options):
            logger.info("task %s attempt %s asked a question but is no longer running", task_id, attempt)
        return
    except NonRetryableError as exc:
        task_fail_attempt(task=task, error=f"{type(exc).__name__}: {exc}", retryable=False)
        return
    except Exception as exc:  # an agent's failure is data, not a worker crash
        task_fail_attempt(task=task, error=_describe(exc), retryable=True)
        return
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        task_fail_attempt(task=task, error=f"the agent's output is not JSON: {exc}", retryable=False)
        return
    task_succeed(task=task, output=output)


def _describe(exc: Exception) -> str:
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3)
    return f"{type(exc).__name__}: {exc}\n{''.join(frames)[-2000:]}"
