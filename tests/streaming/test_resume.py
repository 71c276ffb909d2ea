"""Resuming a stream: a client that hangs up mid-answer and comes back with
``Last-Event-ID`` (SSE) or ``stream_after`` (websocket) gets exactly the chunks it
missed, in order; a retried attempt is told apart; bad input is a 4xx naming it."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import client_for, job_wait, make_user
from tests.streaming.conftest import (
    STREAM_LLM_PORT,
    ended,
    register_llm,
    sse_read,
    submit,
    text_of,
    token_of,
    ws_stream_read,
)
from tests.workers.servers import chat_stream

pytestmark = pytest.mark.django_db(transaction=True)

PIECES = [f"tok{i} " for i in range(20)]


def delta_number(n: int):
    deltas = []

    def stop(message):
        if message["type"] == "task.delta":
            deltas.append(message)
        return len(deltas) == n

    return stop


def test_a_client_that_drops_mid_stream_and_resumes_with_last_event_id_gets_exactly_the_missing_chunks(
    stream_worker, web, staff, alice, serve
):
    serve(STREAM_LLM_PORT, lambda n, body: (200, chat_stream(PIECES, delay=0.05, first_delay=0.5)))
    register_llm(staff, "resumable")
    job_id = submit(alice, {"key": "r", "agent": "resumable"})
    token = token_of(alice)

    before, _ = sse_read(web.http, job_id, token, stop=delta_number(5))  # then hangs up
    time.sleep(0.4)  # chunks keep coming while nobody listens
    after, _ = sse_read(web.http, job_id, token, last_event_id=before[-1]["id"])

    assert job_wait(job_id).status == "succeeded"
    answer = alice.get(f"/jobs/{job_id}/results").json()["tasks"]["r"]["output"]["answer"]
    whole = before + after[:-1]  # without stream.done
    assert text_of(whole) == answer == "".join(PIECES)  # offsets contiguous: nothing lost, nothing twice
    assert after[0]["type"] == "task.delta" and after[0]["offset"] == len("".join(PIECES[:5]))
    everything, _ = sse_read(web.http, job_id, token)  # from the start: what is kept
    assert [m["id"] for m in whole] == [m["id"] for m in everything[:-1]]


def test_a_websocket_resumes_its_stream_after_the_last_id_it_saw(stream_worker, web, staff, alice, serve):
    serve(STREAM_LLM_PORT, lambda n, body: (200, chat_stream(PIECES, delay=0.05, first_delay=0.5)))
    register_llm(staff, "resumable-ws")
    job_id = submit(alice, {"key": "r", "agent": "resumable-ws"})
    token = token_of(alice)

    before, _ = ws_stream_read(web, job_id, token, stop=delta_number(7))
    time.sleep(0.3)
    after, _ = ws_stream_read(web, job_id, token, stream_after=before[-1]["id"], stop=ended)
    assert text_of(before + after) == "".join(PIECES)
    assert after[0]["offset"] == len("".join(PIECES[:7]))


def test_a_retried_attempt_is_marked_as_a_new_attempt_so_two_attempts_words_are_never_glued(
    stream_worker, web, staff, alice, serve
):
    def script(number, body):
        if number == 1:  # the server dies after the role chunk and three words
            return 200, chat_stream(["lost ", "words ", "here "], delay=0.05, cut_after=4)
        return 200, chat_stream(["second ", "try"], delay=0.05)

    serve(STREAM_LLM_PORT, script)
    register_llm(staff, "flaky-stream")
    job_id = submit(alice, {"key": "f", "agent": "flaky-stream"})
    messages, _ = sse_read(web.http, job_id, token_of(alice))
    assert job_wait(job_id).status == "succeeded"

    kinds = [(m["type"], m.get("attempt")) for m in messages]
    assert kinds == [
        ("task.attempt", 1), ("task.delta", 1), ("task.delta", 1), ("task.delta", 1), ("task.end", 1),
        ("task.attempt", 2), ("task.delta", 2), ("task.delta", 2), ("task.end", 2), ("stream.done", None),
    ]  # fmt: skip
    assert messages[4]["status"] == "pending"  # the first attempt ended with a retry scheduled
    assert text_of(messages, attempt=1) == "lost words here "
    assert text_of(messages, attempt=2) == "second try"  # starts again at offset 0
    assert alice.get(f"/jobs/{job_id}/results").json()["tasks"]["f"]["output"]["answer"] == "second try"


def test_a_bad_last_event_id_is_a_400_naming_it_and_another_users_job_is_a_404(pipeline, web, alice):
    job_id = submit(alice, {"key": "a", "agent": "echo"})
    token = token_of(alice)
    bad = httpx.get(f"{web.http}/jobs/{job_id}/stream", headers={"Authorization": token, "Last-Event-ID": "x; DROP"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_last_event_id" and "Last-Event-ID" in bad.json()["fields"]
    bad_query = httpx.get(f"{web.http}/jobs/{job_id}/stream?last_event_id=12-x", headers={"Authorization": token})
    assert bad_query.status_code == 400 and "last_event_id" in bad_query.json()["fields"]

    mallory = client_for(make_user("mallory"))
    other = httpx.get(f"{web.http}/jobs/{job_id}/stream", headers={"Authorization": token_of(mallory)})
    assert other.status_code == 404 and other.json()["error"] == "not_found"
    anonymous = httpx.get(f"{web.http}/jobs/{job_id}/stream")
    assert anonymous.status_code == 401 and anonymous.json()["error"]


def test_the_stream_of_a_finished_job_that_never_streamed_ends_at_once(pipeline, web, alice):
    job_id = submit(alice, {"key": "a", "agent": "echo"})
    assert job_wait(job_id).status == "succeeded"
    started = time.monotonic()
    messages, _ = sse_read(web.http, job_id, token_of(alice))
    assert [m["type"] for m in messages] == ["stream.done"] and messages[0]["status"] == "succeeded"
    assert time.monotonic() - started < 3


def test_streams_count_with_the_users_websockets_and_one_too_many_is_a_429(pipeline, web, alice, settings):
    import threading

    from accounts.ws_guard import long_connection_close, long_connection_open

    job_id = submit(alice, {"key": "t", "agent": "talker", "input": {"words": ["a "] * 30, "pause": 0.1}})
    # Fill the user's budget (AGENTBUS_WS_MAX_PER_USER, 20) but one, as other sockets would.
    others = [f"test:{i}" for i in range(settings.AGENTBUS_WS_MAX_PER_USER - 1)]
    for name in others:
        assert long_connection_open(alice.user.pk, name)
    try:
        first_delta = threading.Event()
        reader = threading.Thread(
            target=lambda: sse_read(web.http, job_id, token_of(alice), stop=lambda m: first_delta.set() or False)
        )
        reader.start()
        assert first_delta.wait(15)  # the last one allowed is open and streaming
        refused = httpx.get(f"{web.http}/jobs/{job_id}/stream", headers={"Authorization": token_of(alice)})
        assert refused.status_code == 429 and refused.json()["error"] == "too_many_connections"
        reader.join(30)
    finally:
        for name in others:
            long_connection_close(alice.user.pk, name)
    assert job_wait(job_id).status == "succeeded"
    closed = httpx.get(f"{web.http}/jobs/{job_id}/stream", headers={"Authorization": token_of(alice)})
    assert closed.status_code == 200  # the finished stream gave its place back
