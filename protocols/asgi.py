"""The protocol endpoints beside Django: one ASGI callable in front of Django's HTTP app.

``/mcp`` goes to the MCP SDK's app, ``/a2a`` and the agent card's well-known path to
the A2A SDK's, everything else to Django, untouched. The MCP SDK's session manager
needs a running task group; the web process runs without ASGI lifespan events
(``--lifespan off``, and daphne sends none), so it is started on the first MCP
request, in the server's event loop, and lives as long as the process.
"""

from __future__ import annotations

import asyncio

from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH

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
        if path in MCP_PATHS:
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
