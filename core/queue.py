"""Queue messages between the orchestrator and the workers: JSON, signed, one entry point.

Redis may sit on a network others can reach, so a worker trusts nothing it reads there.
Every message we send names ``workers.tasks.task_run`` with ``(task_id, attempt,
signature)``; the signature is an HMAC-SHA256 over the entry point and the arguments,
keyed by AGENTBUS_QUEUE_SIGNING_KEY. ``SignedJob`` refuses to call anything else, so a
job written straight into Redis naming ``os.system``, or one of ours with a tampered
argument, runs nothing and is logged. Payloads use RQ's JSON serializer: no pickle is
ever loaded from Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.utils.crypto import salted_hmac
from rq import Queue
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer

from core.redis import redis_client
from core.tracing import TRACEPARENT, dispatch_traceparents, task_span

logger = logging.getLogger(__name__)

ENTRY_POINT = "workers.tasks.task_run"
# Seconds RQ lets a job run past the task's own timeout before its death penalty: our
# entry point enforces the task timeout itself and needs a moment to record it.
TIMEOUT_GRACE = 30


class ForgedMessage(Exception):
    """A queue message that is not ours: wrong entry point, arguments or signature."""


@lru_cache(maxsize=1)
def _signing_key() -> bytes:
    if settings.AGENTBUS_QUEUE_SIGNING_KEY:
        return settings.AGENTBUS_QUEUE_SIGNING_KEY.encode()
    return salted_hmac("agentbus.queue", "signing-key", algorithm="sha256").digest()


def message_signature(task_id: str, attempt: int, trace: str = "") -> str:
    # The trace context (core.tracing) is signed with the ids, so a forged one cannot be
    # slipped into a real message; a message without one signs exactly as before.
    payload = f"{ENTRY_POINT}|{task_id}|{attempt}{'|' + trace if trace else ''}".encode()
    return hmac.new(_signing_key(), payload, hashlib.sha256).hexdigest()


class SignedJob(Job):
    """An RQ job that runs only our entry point, and only with a valid signature."""

    def _execute(self):
        try:
            self._verify()
        except ForgedMessage as exc:
            logger.error("refused queue message %s: %s", self.id, exc)
            raise
        trace = self.args[3] if len(self.args) == 4 else ""
        with task_span(self.args[0], self.args[1], trace):
            return super()._execute()

    # RQ calls a job's callbacks by the names stored in Redis, before and after
    # _execute: a forged job could name any importable function there (and a refused
    # job runs its failure callback). Our messages never carry callbacks.
    @property
    def success_callback(self):
        return None

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None

    def _verify(self) -> None:
        try:
            func_name = self.func_name
        except DeserializationError:
            # Not JSON (a pickle, say): RQ's JSON serializer refused it, nothing was loaded.
            raise ForgedMessage("payload is not a JSON job") from None
        if func_name != ENTRY_POINT or self.instance is not None:
            raise ForgedMessage(f"names {func_name!r}, not {ENTRY_POINT}")
        args, kwargs = self.args, self.kwargs
        # (task_id, attempt, signature), or with a fourth: the W3C traceparent of its
        # dispatch (only when tracing is on), which the signature covers too.
        types = (str, int, str, str)
        if kwargs or len(args) not in (3, 4) or not all(isinstance(a, t) for a, t in zip(args, types)):
            raise ForgedMessage("arguments are not (task_id, attempt, signature[, traceparent])")
        task_id, attempt, signature, *trace = args
        if trace and not TRACEPARENT.match(trace[0]):
            raise ForgedMessage("the trace context is not a traceparent")
        if not hmac.compare_digest(signature, message_signature(task_id, attempt, *trace)):
            raise ForgedMessage("bad signature")


@dataclass(frozen=True)
class TaskMessage:
    task_id: str
    attempt: int
    queue: str
    timeout: int
    # The task's job: not sent (the worker reads it from PostgreSQL); tracing files the
    # dispatch under the job's trace by it.
    job_id: str = ""


def queue_get(name: str) -> Queue:
    return Queue(name, connection=redis_client(), serializer=JSONSerializer, job_class=SignedJob)


def tasks_enqueue(messages: Iterable[TaskMessage]) -> None:
    """Send task messages, one Redis round trip per queue.

    The RQ job id is derived from (task, attempt), so sending the same attempt twice
    (the reconciler re-sending a message it believes lost) queues one job definition;
    a duplicate delivery is harmless anyway, since claiming an attempt is conditional.
    """
    by_queue: dict[str, list[TaskMessage]] = defaultdict(list)
    for message in messages:
        by_queue[message.queue].append(message)
    for name, batch in by_queue.items():
        queue = queue_get(name)
        traces = dispatch_traceparents(batch)  # {} when tracing is off
        data = [
            Queue.prepare_data(
                ENTRY_POINT,
                args=_message_args(m, traces.get(m.task_id, "")),
                timeout=m.timeout + TIMEOUT_GRACE,
                job_id=message_job_id(m),
                result_ttl=0,
                failure_ttl=24 * 3600,
                description=f"task {m.task_id} attempt {m.attempt}",
            )
            for m in batch
        ]
        queue.enqueue_many(data)  # one pipeline, executed by RQ


def _message_args(message: TaskMessage, trace: str) -> tuple:
    signature = message_signature(message.task_id, message.attempt, trace)
    if trace:
        return (message.task_id, message.attempt, signature, trace)
    return (message.task_id, message.attempt, signature)


def message_job_id(message: TaskMessage) -> str:
    """The RQ job id of a task's attempt: the same attempt always maps to the same job."""
    return f"task-{message.task_id}-{message.attempt}"


def messages_waiting(messages: list[TaskMessage]) -> set[str]:
    """The task ids, among these messages, whose RQ job still waits intact in its queue
    (its id on the queue's list and its hash present), in one Redis round trip.

    The reconciler sends again only the others: a task that waits behind a backlog is
    not lost, and re-sending it each pass would grow the queue with duplicates.
    """
    if not messages:
        return set()
    pipe = redis_client().pipeline(transaction=False)
    for message in messages:
        job_id = message_job_id(message)
        pipe.lpos(f"{Queue.redis_queue_namespace_prefix}{message.queue}", job_id)
        pipe.exists(Job.key_for(job_id))
    replies = pipe.execute()
    return {
        message.task_id
        for message, position, exists in zip(messages, replies[::2], replies[1::2], strict=True)
        if position is not None and exists
    }


def queues_capacity(names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``{queue: (workers, waiting messages)}``: the RQ workers registered on each queue
    and the messages on its list, in one Redis round trip (jobs.scheduling sizes what a
    queue may hold by its workers, and hands a task to a worker only past an empty list)."""
    names = list(names)
    pipe = redis_client().pipeline(transaction=False)
    for name in names:
        pipe.scard(f"rq:workers:{name}")
        pipe.llen(f"{Queue.redis_queue_namespace_prefix}{name}")
    replies = pipe.execute()
    return {name: (replies[2 * i], replies[2 * i + 1]) for i, name in enumerate(names)}
