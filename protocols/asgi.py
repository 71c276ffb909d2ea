"""The protocol endpoints beside Django: one ASGI callable in front of Django's HTTP app.

``/mcp`` goes to the MCP SDK's app, ``/a2a`` and the agent card's well-known path to
the A2A SDK's, everything else to Django, untouched. The MCP SDK's session manager
needs a running task group; the web process runs without ASGI lifespan events
(``--lifespan off``, and daphne sends none), so it is started on the first MCP
request, in the server's event loop, and lives as long as the process.

Django's ALLOWED_HOSTS check does not run for these paths, so the router applies it:
the agent card builds its endpoint's URL from the Host header, and a forged one must
not be served back (to a cache, say).
"""

from __future__ import annotations

import asyncio
import json

from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from django.conf import settings
from django.http.request import split_domain_port, validate_host

A2A_PREFIX = "/a2a"
MCP_PATHS = ("/mcp", "/mcp/")


class ProtocolRouter:
    def __init__(self, django_app) -> None:
        self.django_app = django_app
        self._mcp = None
        self._a2a = None
        self._mcp_ready: asyncio.Event | None = None
        self._mcp_runner: asyncio.Task | None = None

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        protocol = path in MCP_PATHS or path == AGENT_CARD_WELL_KNOWN_PATH or path.startswith(A2A_PREFIX)
        if protocol and not host_allowed(scope):
            await _bad_host(send)
        elif path in MCP_PATHS:
            await (await self._mcp_app())(scope, receive, send)
        elif path == AGENT_CARD_WELL_KNOWN_PATH or path == A2A_PREFIX or path.startswith(A2A_PREFIX + "/"):
            await self._a2a_app()(scope, receive, send)
        else:
            await self.django_app(scope, receive, send)

    async def _mcp_app(self):
        if self._mcp_ready is None:
            from protocols.auth import TokenAuth
            from protocols.mcp_server import mcp_asgi_app, server

            self._mcp = TokenAuth(mcp_asgi_app())
            self._mcp_ready = asyncio.Event()
            self._mcp_runner = asyncio.create_task(self._run_session_manager(server), name="mcp-session-manager")
        await self._mcp_ready.wait()
        return self._mcp

    async def _run_session_manager(self, server) -> None:
        async with server.session_manager.run():
            self._mcp_ready.set()
            await asyncio.Event().wait()  # until the process ends

    def _a2a_app(self):
        if self._a2a is None:
            from protocols.a2a_server import a2a_asgi_app

            self._a2a = a2a_asgi_app()
        return self._a2a


def host_allowed(scope) -> bool:
    """The Host header against ALLOWED_HOSTS, as Django's HttpRequest.get_host() checks it."""
    host = next((value.decode("latin1") for key, value in scope.get("headers", []) if key == b"host"), "")
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


async def _bad_host(send) -> None:
    body = json.dumps({"error": "bad_request", "detail": "The Host header is not one this server answers."}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
