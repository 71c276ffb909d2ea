"""The worker process class used by `manage.py rqworker` (settings.RQ["WORKER_CLASS"]).

A SimpleWorker runs jobs in its own process instead of forking a child per job: a
fork per task would cost a new PostgreSQL connection and Django's warm caches each
time, which dominates short agent calls. Isolation from a misbehaving agent comes from
the supervisor thread (timeouts, cancellation) and from running several worker
processes; a worker that dies is detected by its missing heartbeat.

Whatever the command line says, the worker reads JSON only and runs only SignedJob.
"""

from __future__ import annotations

from django.conf import settings
from rq.exceptions import DeserializationError
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

# The entry point RQ imports by name on the first task, loaded with the worker class
# instead: with it come the agents' kinds and the openai client, seconds of imports on
# a loaded machine. A worker that registers with RQ is then ready; before, a fresh one
# took its first task 2 to 10 s late (16 new workers in bench/pipeline.py).
import workers.tasks  # noqa: F401
from core.logging import log_context
from core.metrics import metrics_serve
from core.queue import SignedJob


class AgentWorker(SimpleWorker):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["serializer"] = JSONSerializer
        kwargs["job_class"] = SignedJob
        super().__init__(*args, **kwargs)

    def work(self, *args, **kwargs):
        # Each worker process serves its own metrics (AGENTBUS_METRICS_PORT; off if unset).
        metrics_serve(settings.AGENTBUS_METRICS_PORT)
        return super().work(*args, **kwargs)

    def perform_job(self, job, *args, **kwargs) -> bool:
        # Every log line of the attempt, RQ's included, names the task and attempt.
        try:
            task_id, attempt = job.args[0], job.args[1]
        except (IndexError, TypeError, ValueError, DeserializationError):  # forged: SignedJob refuses it
            task_id = attempt = None
        with log_context(task_id=task_id, attempt=attempt):
            return super().perform_job(job, *args, **kwargs)
