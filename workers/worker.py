"""The worker process class used by `manage.py rqworker` (settings.RQ["WORKER_CLASS"]).

A SimpleWorker runs jobs in its own process instead of forking a child per job: a
fork per task would cost a new PostgreSQL connection and Django's warm caches each
time, which dominates short agent calls. Isolation from a misbehaving agent comes from
the supervisor thread (timeouts, cancellation) and from running several worker
processes; a worker that dies is detected by its missing heartbeat.

Whatever the command line says, the worker reads JSON only and runs only SignedJob.
"""

from __future__ import annotations

from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from workers.queue import SignedJob


class AgentWorker(SimpleWorker):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["serializer"] = JSONSerializer
        kwargs["job_class"] = SignedJob
        super().__init__(*args, **kwargs)
