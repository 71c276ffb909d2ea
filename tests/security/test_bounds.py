"""Bounds on what one client can make the server spend: the body limit before the body
is read (Content-Length and chunked), memory write cost per request, quota and rate,
sockets per user, and a bounded send queue that drops a slow reader (4408)."""

from __future__ import annotations

import socket
import time

import pytest
from django.conf import settings as django_settings

from tests.conftest import client_for, make_user
from tests.security.conftest import token_header, ws_close_code, ws_open

pytestmark = pytest.mark.django_db(transaction=True)
BOUNDS_WEB_PORT = 8245
UVICORN_PORT = 8246


@pytest.fixture(scope="module")
def uvicorn_web(django_db_setup, redis_flushed, tmp_path_factory):
    """The Procfile's web server: uvicorn hands a body to the app as it streams in
    (daphne, the development server, buffers the whole body itself before the app runs)."""
    from tests.live.conftest import server_start, server_stop

    argv = ["uvicorn", "agentbus_site.asgi:application", "--host", "127.0.0.1", "--port", str(UVICORN_PORT),
            "--lifespan", "off", "--no-access-log"]  # fmt: skip
    proc = server_start(argv, port=UVICORN_PORT, log_path=tmp_path_factory.mktemp("uvicorn") / "uvicorn.log")
    yield UVICORN_PORT
    server_stop(proc)


def raw_request(port: int, head: str, body_chunks, *, timeout: float = 5.0) -> bytes:
    """Send a request's head, then body chunks, and return whatever the server answers
    (b"" if it answers nothing within ``timeout`` of the last chunk)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server already answered and closed
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


def test_a_declared_oversized_body_is_refused_before_it_is_sent(uvicorn_web):
    port = uvicorn_web
    head = (
        "POST /auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 30000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_request(port, head, [b'{"username": "'])  # 14 of 30,000,000 bytes
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer and time.monotonic() - started < 5


def test_a_chunked_body_is_counted_as_it_streams_and_refused_past_the_limit(uvicorn_web):
    port = uvicorn_web
    head = (
        "POST /auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    enough = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE // len(piece) + 2
    answer = raw_request(port, head, [chunk] * enough)  # never the final 0-chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_memory_batch_is_capped_by_the_text_it_carries(alice, settings, memory_index):
    settings.AGENTBUS_MEMORY_MAX_REQUEST_CHARS = 1000
    body = {"memories": [{"text": "a" * 600}, {"text": "b" * 600}]}
    response = alice.post("/memory/batch", body, format="json")
    assert response.status_code == 413
    assert "memories" in response.json()["fields"]
    assert alice.post("/memory/batch", {"memories": [{"text": "a" * 600}]}, format="json").status_code == 201


def test_a_user_has_a_memory_quota(alice, settings, memory_index):
    settings.AGENTBUS_MEMORY_MAX_PER_USER = 2
    for text in ("one", "two"):
        assert alice.post("/memory/store", {"text": text}, format="json").status_code == 201
    refused = alice.post("/memory/store", {"text": "three"}, format="json")
    assert refused.status_code == 429 and refused.json()["error"] == "memory_quota"


def test_memory_writes_are_rate_limited_per_user(settings, memory_index):
    settings.AGENTBUS_MEMORY_WRITE_RATE = "2/min"
    writer = client_for(make_user(f"rate-{time.time_ns()}"))
    statuses = [writer.post("/memory/store", {"text": f"n{i}"}, format="json") for i in range(3)]
    assert [r.status_code for r in statuses] == [201, 201, 429]
    assert int(statuses[2]["Retry-After"]) >= 1


@pytest.fixture(scope="module")
def bounds_web(django_db_setup, redis_flushed, tmp_path_factory):
    """uvicorn (the Procfile's server), whose websocket sends wait for the network, so a
    reader that does not keep up backs up into the socket's send queue."""
    from tests.live.conftest import server_start, server_stop

    argv = ["uvicorn", "agentbus_site.asgi:application", "--host", "127.0.0.1", "--port", str(BOUNDS_WEB_PORT),
            "--ws", "websockets", "--lifespan", "off", "--no-access-log"]  # fmt: skip
    log_path = tmp_path_factory.mktemp("bounds") / "uvicorn.log"
    proc = server_start(argv, port=BOUNDS_WEB_PORT, log_path=log_path, AGENTBUS_WS_MAX_PER_USER="3",
                        AGENTBUS_WS_SEND_QUEUE="20")  # fmt: skip
    yield f"http://127.0.0.1:{BOUNDS_WEB_PORT}"
    server_stop(proc)


def test_a_user_may_hold_only_so_many_sockets(bounds_web):
    ivy = client_for(make_user("ivy"))
    headers = {"Authorization": token_header(ivy)}
    opened = [ws_open(bounds_web, "/ws/jobs", headers=headers) for _ in range(3)]
    try:
        with ws_open(bounds_web, "/ws/jobs", headers=headers) as fourth:
            assert ws_close_code(fourth, timeout=5) == 4429
        assert all(ws_close_code(ws, timeout=0.3) is None for ws in opened)
    finally:
        for ws in opened:
            ws.close()
    with ws_open(bounds_web, "/ws/jobs", headers=headers) as again:  # closed ones free their place
        assert ws_close_code(again, timeout=1) is None
