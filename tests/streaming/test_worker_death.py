"""A worker killed mid-stream leaves a stream that ends with a clear marker: the
reconciler, finding the task's heartbeat gone, closes the attempt's stream with
``task.abandoned`` before the job's end is told (``stream.done``)."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import job_wait
from tests.streaming.conftest import STREAM_LLM_PORT, register_llm, sse_read, submit, text_of, token_of
from tests.workers.servers import chat_stream

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_killed_mid_stream_leaves_a_stream_that_ends_with_an_abandoned_marker(
    stream_worker, pipeline, web, staff, alice, serve
):
    serve(STREAM_LLM_PORT, lambda n, body: (200, chat_stream([f"w{i} " for i in range(40)], delay=0.2)))
    register_llm(staff, "mortal", max_attempts=1)
    job_id = submit(alice, {"key": "m", "agent": "mortal"})
    token = token_of(alice)

    before, _ = sse_read(web.http, job_id, token, stop=lambda m: m["type"] == "task.delta" and m["offset"] > 0)
    pipeline.processes.stop(stream_worker, signal.SIGKILL)
    after, _ = sse_read(web.http, job_id, token, last_event_id=before[-1]["id"], timeout=40)

    assert job_wait(job_id, timeout=30).status == "failed"
    closing = [m for m in after if m["type"] != "task.delta"]
    assert [m["type"] for m in closing] == ["task.abandoned", "stream.done"], after
    assert closing[0]["attempt"] == 1 and "heartbeat" in closing[0]["reason"]
    assert closing[1]["status"] == "failed"
    assert text_of(before + after)  # what was said before the worker died is still there, in order
