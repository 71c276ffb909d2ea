"""Shared by the hardening tests: a real web process (daphne on agentbus_site.asgi, as
runserver and the browser tests use it) on the test database and Redis, and a small
HTTP client for it that never raises on an error status."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from tests.memory.conftest import memory_index, remember  # noqa: F401 (fixtures for the memory tests here)

# Ports 8243..8249 are this suite's (HELPERS.md isolation); 8243 is the shared web process.
SECURITY_WEB_PORT = 8243


def http(base: str, method: str, path: str, *, body=None, raw: bytes | None = None, headers: dict | None = None):
    """One request; returns (status, headers, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, head, content = response.status, response.headers, response.read()  # case-insensitive
    except urllib.error.HTTPError as error:
        status, head, content = error.code, error.headers, error.read()
    try:
        return status, head, json.loads(content or b"null")
    except ValueError:
        return status, head, content.decode("utf-8", "replace")


@pytest.fixture(scope="session")
def security_web(processes):
    """The Procfile's web process for this session: its base URL and a request helper."""
    _, base = processes.start_web(SECURITY_WEB_PORT, name="security-web", env={"AGENTBUS_WS_RECHECK_INTERVAL": "1"})
    return SimpleNamespace(base=base, call=lambda *a, **k: http(base, *a, **k))


def ws_open(base: str, path: str, *, headers: dict | None = None):
    """A real websocket client on the security web process (websockets' sync client)."""
    from websockets.sync.client import connect

    return connect(base.replace("http", "ws", 1) + path, additional_headers=headers or {}, proxy=None, open_timeout=10)


def ws_close_code(ws, *, timeout: float = 10.0) -> int | None:
    """Read until the server closes the socket; its close code (None: still open)."""
    from websockets.exceptions import ConnectionClosed

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


def token_header(client) -> str:
    return client._credentials["HTTP_AUTHORIZATION"]


def session_cookie(user) -> str:
    """A logged-in browser session of ``user``, as a Cookie header."""
    from django.conf import settings
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
