"""Chunks reach watchers live, in order, over SSE and the websocket, from an LLM agent
streaming from a scripted OpenAI-compatible server (real SSE, chunk by chunk), a Python
agent (ctx.stream, ctx.emit) and an HTTP agent answering with an SSE body."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import job_wait
from tests.streaming.conftest import (
    STREAM_AGENT_PORT,
    STREAM_LLM_PORT,
    ended,
    register_llm,
    sse_read,
    submit,
    text_of,
    token_of,
    ws_stream_read,
)
from tests.workers.servers import Streamed, chat_stream

pytestmark = pytest.mark.django_db(transaction=True)

PIECES = [f"word{i} " for i in range(12)]


def test_an_llm_agents_tokens_arrive_over_sse_and_the_websocket_in_order_while_it_answers(
    stream_worker, web, staff, alice, serve
):
    replies = []

    def script(number, body):
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        replies.append(chat_stream(PIECES, delay=0.08, first_delay=0.8))
        return 200, replies[-1]

    serve(STREAM_LLM_PORT, script)
    register_llm(staff, "writer")
    job_id = submit(alice, {"key": "w", "agent": "writer", "input": {"prompt": "write"}})
    token = token_of(alice)

    got = {}

    def over_sse():
        got["sse"] = sse_read(web.http, job_id, token)  # to stream.done

    reader = threading.Thread(target=over_sse)
    reader.start()
    ws_messages, ws_arrived = ws_stream_read(web, job_id, token, stop=ended)
    reader.join(30)
    sse_messages, sse_arrived = got["sse"]

    assert job_wait(job_id).status == "succeeded"
    output = alice.get(f"/jobs/{job_id}/results").json()["tasks"]["w"]["output"]
    assert output["answer"] == "".join(PIECES)
    assert output["usage"]["completion_tokens"] == len(PIECES)
    for messages, arrived in ((ws_messages, ws_arrived), (sse_messages[:-1], sse_arrived[:-1])):
        assert [m["type"] for m in messages] == ["task.attempt", *["task.delta"] * len(PIECES), "task.end"]
        assert text_of(messages) == output["answer"]  # each delta begins where the last ended
        ids = [tuple(map(int, m["id"].split("-"))) for m in messages]
        assert ids == sorted(set(ids))  # in order, none twice
        assert {m["attempt"] for m in messages} == {1} and {m["key"] for m in messages} == {"w"}
        # Live: the first words were read before the server had sent the last one.
        first_delta = next(i for i, m in enumerate(messages) if m["type"] == "task.delta")
        assert arrived[first_delta] < replies[0].sent_at[-1] - 0.3
    assert sse_messages[-1]["type"] == "stream.done" and sse_messages[-1]["status"] == "succeeded"
    assert ws_messages[-1]["status"] == "succeeded"


def test_a_python_agent_streams_text_and_custom_chunks_with_ctx_stream_and_ctx_emit(pipeline, web, alice):
    words = ["The ", "tide ", "comes ", "in."]
    job_id = submit(alice, {"key": "t", "agent": "talker", "input": {"words": words, "pause": 0.05}})
    messages, _ = sse_read(web.http, job_id, token_of(alice))
    assert job_wait(job_id).status == "succeeded"
    kinds = [m["type"] for m in messages]
    assert kinds == ["task.attempt", "task.delta", "task.delta", "task.emit", "task.delta", "task.delta",
                     "task.end", "stream.done"]  # fmt: skip
    emitted = messages[3]
    assert emitted["kind"] == "step" and emitted["data"] == {"half": 2} and emitted["offset"] == len("The tide ")
    assert text_of(messages) == "The tide comes in."


def test_an_http_agent_answering_with_an_sse_body_streams_its_chunks_and_its_final_output(
    pipeline, web, staff, alice, serve
):
    events = [{"delta": "Bonjour"}, {"event": "tool", "data": {"name": "dictionary"}}, {"delta": ", monde"},
              {"output": {"text": "Bonjour, monde"}}]  # fmt: skip
    serve(STREAM_AGENT_PORT, lambda n, body: (200, Streamed(events, delay=0.05)))
    response = staff.post(
        "/agents",
        {"name": "translator", "kind": "http", "url": f"http://127.0.0.1:{STREAM_AGENT_PORT}/", "secret": "s",
         "timeout": 10, "max_attempts": 1},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    job_id = submit(alice, {"key": "h", "agent": "translator"})
    messages, _ = sse_read(web.http, job_id, token_of(alice))
    assert job_wait(job_id).status == "succeeded"
    assert alice.get(f"/jobs/{job_id}/results").json()["tasks"]["h"]["output"] == {"text": "Bonjour, monde"}
    assert [m["type"] for m in messages] == ["task.attempt", "task.delta", "task.emit", "task.delta", "task.end",
                                             "stream.done"]  # fmt: skip
    assert text_of(messages) == "Bonjour, monde" and messages[2]["data"] == {"name": "dictionary"}


def test_a_signed_ndjson_answer_passes_its_chunks_on_only_once_the_whole_body_is_verified(
    pipeline, web, staff, alice, serve
):
    from agents.http import NONCE_HEADER, REPLY_SIGNATURE_HEADER, http_reply_signature

    events = [{"delta": "checked "}, {"delta": "words"}, {"output": {"text": "checked words"}}]

    def signed(headers: dict, body: bytes) -> dict:
        nonce = next(v for k, v in headers.items() if k.lower() == NONCE_HEADER.lower())
        return {REPLY_SIGNATURE_HEADER: http_reply_signature("reply-key", nonce=nonce, status=200, body=body)}

    replies = []

    def script(number, body):
        replies.append(Streamed(events, delay=0.3, format="ndjson", headers=signed))
        return 200, replies[-1]

    serve(STREAM_AGENT_PORT, script)
    response = staff.post(
        "/agents",
        {"name": "notary", "kind": "http", "url": f"http://127.0.0.1:{STREAM_AGENT_PORT}/", "secret": "s",
         "reply_secret": "reply-key", "timeout": 10, "max_attempts": 1},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    job_id = submit(alice, {"key": "n", "agent": "notary"})
    messages, arrived = sse_read(web.http, job_id, token_of(alice))
    assert job_wait(job_id).status == "succeeded"
    assert text_of(messages) == "checked words"
    first_delta = next(i for i, m in enumerate(messages) if m["type"] == "task.delta")
    # Held until the last line was in and the signature checked out: none was seen earlier.
    assert arrived[first_delta] >= replies[0].sent_at[-1]
