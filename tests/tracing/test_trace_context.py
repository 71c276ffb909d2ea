"""The trace context rides in the signed queue message: a worker takes it only with a
valid signature over it, only in the W3C shape, and messages without one (tracing off,
or sent by an older version) work as before."""

from __future__ import annotations

import uuid

import pytest
from rq.serializers import JSONSerializer

from core.queue import (
    ENTRY_POINT,
    ForgedMessage,
    SignedJob,
    TaskMessage,
    message_signature,
    queue_get,
    tasks_enqueue,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def signed_job(redis, *args) -> SignedJob:
    job = SignedJob.create(ENTRY_POINT, args=args, connection=redis, serializer=JSONSerializer)
    job.save()
    return SignedJob.fetch(job.id, connection=redis, serializer=JSONSerializer)  # as a worker reads it


def test_a_trace_context_signed_with_the_ids_is_accepted(redis_flushed):
    task_id = str(uuid.uuid4())
    signed_job(redis_flushed, task_id, 1, message_signature(task_id, 1, TRACEPARENT), TRACEPARENT)._verify()


def test_a_message_without_a_trace_context_signs_and_verifies_as_before(redis_flushed):
    task_id = str(uuid.uuid4())
    assert message_signature(task_id, 2) == message_signature(task_id, 2, "")
    signed_job(redis_flushed, task_id, 2, message_signature(task_id, 2))._verify()


def test_a_trace_context_added_to_a_real_message_is_refused(redis_flushed):
    task_id = str(uuid.uuid4())
    with pytest.raises(ForgedMessage, match="bad signature"):
        signed_job(redis_flushed, task_id, 1, message_signature(task_id, 1), TRACEPARENT)._verify()


def test_a_trace_context_swapped_for_another_is_refused(redis_flushed):
    task_id = str(uuid.uuid4())
    other = TRACEPARENT.replace("b7ad", "0000")
    with pytest.raises(ForgedMessage, match="bad signature"):
        signed_job(redis_flushed, task_id, 1, message_signature(task_id, 1, TRACEPARENT), other)._verify()


@pytest.mark.parametrize(
    "junk", ["not-a-traceparent", TRACEPARENT + "x" * 5000, "00-" + "g" * 32 + "-" + "0" * 16 + "-01"]
)
def test_a_signed_value_that_is_not_a_traceparent_is_refused(redis_flushed, junk):
    task_id = str(uuid.uuid4())
    with pytest.raises(ForgedMessage, match="not a traceparent"):
        signed_job(redis_flushed, task_id, 1, message_signature(task_id, 1, junk), junk)._verify()


def test_with_tracing_off_messages_carry_no_context_and_the_middleware_is_dropped(redis_flushed, monkeypatch):
    from django.core.exceptions import MiddlewareNotUsed

    from core.tracing import TracingMiddleware

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    queue = queue_get("default")
    queue.empty()
    task_id = str(uuid.uuid4())
    tasks_enqueue([TaskMessage(task_id, 1, "default", 30)])
    (job,) = queue.get_jobs()
    assert list(job.args) == [task_id, 1, message_signature(task_id, 1)]
    queue.empty()
    with pytest.raises(MiddlewareNotUsed):  # Django then leaves it out of the chain
        TracingMiddleware(lambda request: None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    TracingMiddleware(lambda request: None)
