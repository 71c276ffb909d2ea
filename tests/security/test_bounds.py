"""Bounds on what one client can make the server spend: the body limit before the body
is read (Content-Length and chunked), memory write cost per request, quota and rate,
sockets per user, and a bounded send queue that drops a slow reader (4408)."""

from __future__ import annotations

import socket
import time

import pytest
from django.conf import settings as django_settings

from core.live_signing import live_sign
from jobs.events import user_jobs_group
from tests.conftest import client_for, make_user
from tests.security.conftest import token_header, ws_close_code, ws_open
from tests.security.test_live_layer import publish

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
        answer = b""
        try:
            # Until the server closes: the head and the body may come in separate reads.
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


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


def _raw_websocket(port: int, path: str, token: str) -> socket.socket:
    """A websocket handshake on a plain socket that then reads nothing: a slow client
    (a library client would keep reading into its own memory)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: {token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _frames(sock: socket.socket, *, timeout: float):
    """(opcode, payload) of each frame the server sent, until it closes or goes quiet."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode, length, i = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        frames.append((opcode, data[i : i + length]))
        i += length
    return frames


def test_a_reader_too_slow_for_its_feed_is_dropped_with_4408(bounds_web):
    jay = client_for(make_user("jay"))
    sock = _raw_websocket(BOUNDS_WEB_PORT, "/ws/jobs", token_header(jay))
    try:
        time.sleep(0.5)
        blob = "x" * 65536
        for i in range(300):  # ~20 MB, none of it read meanwhile
            event = {"seq": i, "type": "job.status", "job": "j", "status": "running", "blob": blob}
            publish(user_jobs_group(jay.user.pk), live_sign({"type": "jobs.changed", "events": [event]}))
        time.sleep(2)
        frames = _frames(sock, timeout=5)
    finally:
        sock.close()
    texts = [payload for opcode, payload in frames if opcode == 1]
    closes = [int.from_bytes(payload[:2], "big") for opcode, payload in frames if opcode == 8]
    assert closes == [4408], (len(texts), closes)
    assert len(texts) < 300
