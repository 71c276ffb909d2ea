"""Fixtures of the streaming tests: a scripted OpenAI-compatible server streaming real
SSE on its own port, a worker for the ``llm`` queue pointed at it, the live web server
(uvicorn, tests/live), and readers of a job's stream over SSE and the websocket."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import wait_for, worker_registered
from tests.live.conftest import (  # noqa: F401 (receive, token_of, ws_connect: for the tests here)
    ASGI_SERVERS,
    WEB_PORT,
    receive,
    server_start,
    server_stop,
    token_of,
    ws_connect,
)
from tests.pages.test_browser import browser_page, log_in  # noqa: F401 (browser_page is a fixture)
from tests.workers.conftest import serve, staff  # noqa: F401 (fixtures, shared with tests/workers)

STREAM_LLM_PORT = int(os.environ.get("AGENTBUS_TEST_STREAM_LLM_PORT", "8435"))
STREAM_AGENT_PORT = int(os.environ.get("AGENTBUS_TEST_STREAM_AGENT_PORT", "8436"))
STREAM_LLM_URL = f"http://127.0.0.1:{STREAM_LLM_PORT}/v1"
STREAM_WEB_PORT = int(os.environ.get("AGENTBUS_TEST_STREAM_WEB_PORT", "8437"))


@pytest.fixture(scope="session")
def web(django_db_setup, redis_flushed, tmp_path_factory):
    """The live tests' web server (uvicorn, as the Procfile runs it), on a port of its own:
    tests/live's session-long server holds theirs when these tests run in the same session."""
    argv = [str(STREAM_WEB_PORT) if arg == str(WEB_PORT) else arg for arg in ASGI_SERVERS["uvicorn"]]
    log_path = tmp_path_factory.mktemp("stream-web") / "uvicorn.log"
    proc = server_start(argv, port=STREAM_WEB_PORT, log_path=log_path)
    base = f"127.0.0.1:{STREAM_WEB_PORT}"
    yield SimpleNamespace(http=f"http://{base}", ws=f"ws://{base}", proc=proc, log_path=log_path)
    server_stop(proc)


@pytest.fixture(scope="module")
def stream_worker(pipeline, processes, redis_flushed):
    """A worker of the ``llm`` queue whose LLM is the scripted streaming server."""
    env = {"AGENTBUS_LLM_BASE_URL": STREAM_LLM_URL, "AGENTBUS_LLM_MODEL": "scripted-model"}
    worker = processes.start("rqworker", "llm", name="stream-worker", env=env)
    wait_for(lambda: worker_registered(redis_flushed, "llm"), timeout=30, message="the llm worker to register")
    yield worker
    processes.stop(worker)


def register_llm(staff, name: str, **extra) -> None:  # noqa: F811 (a client, not the fixture)
    body = {"name": name, "kind": "llm", "queue": "llm", "timeout": 20, "max_attempts": 2, "retry_backoff": 0.1,
            "base_url": STREAM_LLM_URL, **extra}  # fmt: skip
    response = staff.post("/agents", body, format="json")
    assert response.status_code == 201, response.content


def submit(client, *tasks: dict) -> str:
    response = client.post("/jobs", {"requirements": "stream", "plan": {"tasks": list(tasks)}}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def sse_parse(lines) -> tuple[list[dict], list[str]]:
    """SSE lines into their events' ``data`` objects (with the ``id:`` and ``event:``
    lines checked against them); also the comments seen."""
    messages, comments, fields = [], [], {}
    for line in lines:
        if line == "":
            if "data" in fields:
                message = json.loads(fields["data"])
                assert message["type"] == fields.get("event"), fields
                assert message.get("id") == fields.get("id"), fields
                messages.append(message)
            fields = {}
        elif line.startswith(":"):
            comments.append(line)
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return messages, comments


def sse_read(base: str, job_id: str, token: str, *, last_event_id: str | None = None, stop=None, timeout=30.0):
    """Read ``GET /jobs/{id}/stream`` until ``stop(message)`` (then hang up) or the
    server ends it; returns the messages and when each arrived (time.time())."""
    headers = {"Authorization": token, "Accept": "text/event-stream"}  # as EventSource asks
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    messages, arrived, block = [], [], []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{base}/jobs/{job_id}/stream", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            assert time.monotonic() < deadline, f"the stream did not end in time: {messages}"
            if line != "":
                block.append(line)
                continue
            parsed, _ = sse_parse([*block, ""])
            block = []
            for message in parsed:
                messages.append(message)
                arrived.append(time.time())
                if stop is not None and stop(message):
                    return messages, arrived
    return messages, arrived


def ws_stream_read(server, job_id: str, token: str, *, stream_after: str | None = None, stop, timeout=30.0):
    """The stream messages of the job's websocket (``?stream=1``) until ``stop(message)``;
    the job's events (with a ``seq``) are left out."""
    query = "?stream=1" + (f"&stream_after={stream_after}" if stream_after else "")
    messages, arrived = [], []
    deadline = time.monotonic() + timeout
    with ws_connect(server, f"/ws/jobs/{job_id}{query}", authorization=token) as ws:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; stream messages so far: {messages}"
            message = receive(ws, timeout=remaining)
            if "seq" in message:
                continue
            messages.append(message)
            arrived.append(time.time())
            if stop(message):
                return messages, arrived


def text_of(messages: list[dict], *, attempt: int | None = None) -> str:
    """The text the deltas spell (of one attempt), checking each begins where the last ended."""
    text = ""
    for m in messages:
        if m["type"] == "task.snapshot" and (attempt is None or m["attempt"] == attempt):
            text = m["text"]  # the text up to a checkpoint, for a reader behind trimmed entries
        if m["type"] == "task.delta" and (attempt is None or m["attempt"] == attempt):
            assert m["offset"] == len(text), (m, text)
            text += m["text"]
    return text


def ended(message: dict) -> bool:
    return message["type"] == "task.end" and message["status"] == "succeeded"
