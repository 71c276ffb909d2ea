"""A real ASGI server (uvicorn, as the Procfile's web process) for websocket and HTTP
tests, on the test database and the test Redis (the real channel layer)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from websockets.sync.client import connect

from tests.conftest import ROOT, process_env, wait_for

WEB_PORT = int(os.environ.get("AGENTBUS_TEST_WEB_PORT", "8120"))
# Quick resync in tests, so a dropped final event shows up within a test's patience.
RESYNC_INTERVAL = "0.5"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def server_start(argv: list[str], *, port: int, log_path: Path, **env: str) -> subprocess.Popen:
    if _port_open(port):
        pytest.fail(f"port {port} is already taken; set AGENTBUS_TEST_WEB_PORT")
    log = open(log_path, "w")  # noqa: SIM115 (the server writes to it until stopped)
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=process_env(AGENTBUS_WS_RESYNC_INTERVAL=RESYNC_INTERVAL, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: proc.poll() is not None or _port_open(port), timeout=30, message=f"server on {port}")
    except BaseException:
        proc.kill()
        raise
    if proc.poll() is not None:
        pytest.fail(f"server exited: {log_path.read_text()[-3000:]}")
    return proc


def server_stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# The Procfile's web server (uvicorn, measured faster in bench/live.py); daphne, which
# `runserver` uses, with AGENTBUS_TEST_ASGI_SERVER=daphne (the browser tests use it too).
ASGI_SERVERS = {
    "uvicorn": [
        "uvicorn", "agentbus_site.asgi:application", "--host", "127.0.0.1", "--port", str(WEB_PORT),
        "--ws", "websockets", "--lifespan", "off", "--no-access-log",
    ],
    "daphne": ["daphne", "-b", "127.0.0.1", "-p", str(WEB_PORT), "agentbus_site.asgi:application"],
}  # fmt: skip


@pytest.fixture(scope="session")
def web(django_db_setup, redis_flushed, tmp_path_factory):
    """The ASGI server serving agentbus_site.asgi on 127.0.0.1:WEB_PORT."""
    server = os.environ.get("AGENTBUS_TEST_ASGI_SERVER", "uvicorn")
    log_path = tmp_path_factory.mktemp("web") / f"{server}.log"
    proc = server_start(ASGI_SERVERS[server], port=WEB_PORT, log_path=log_path)
    yield SimpleNamespace(
        http=f"http://127.0.0.1:{WEB_PORT}", ws=f"ws://127.0.0.1:{WEB_PORT}", proc=proc, log_path=log_path
    )
    server_stop(proc)


def token_of(client) -> str:
    return client._credentials["HTTP_AUTHORIZATION"]


def ws_connect(web, path: str, *, authorization: str | None = None, additional_headers=None, **kwargs):
    headers = dict(additional_headers or {})
    if authorization:
        headers["Authorization"] = authorization
    return connect(f"{web.ws}{path}", additional_headers=headers, proxy=None, open_timeout=10, **kwargs)


def receive(ws, timeout: float = 10.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def receive_until(ws, done, *, timeout: float = 30.0) -> list[dict]:
    """Messages until ``done(message)`` is true (that one included)."""
    deadline = time.monotonic() + timeout
    messages = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"timed out; received so far: {messages}")
        message = receive(ws, timeout=remaining)
        messages.append(message)
        if done(message):
            return messages


def nothing_more(ws, wait: float = 1.0) -> bool:
    try:
        extra = ws.recv(timeout=wait)
    except TimeoutError:
        return True
    pytest.fail(f"unexpected extra message: {extra}")
