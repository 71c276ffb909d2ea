"""An MCP server built with the official `mcp` SDK, for `mcp` agents to call:
`python -m tests.protocols.peers.mcp_peer PORT TOKEN` serves streamable HTTP at /mcp,
refusing requests without `Authorization: Bearer TOKEN`."""

from __future__ import annotations

import sys

import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.responses import JSONResponse

server = MCPServer("peer")
calls: list[str] = []


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    calls.append("add")
    return a + b


@server.tool()
def shout(text: str) -> dict:
    """Upper-case a text."""
    return {"text": text.upper(), "calls": len(calls)}


@server.tool()
def fail(reason: str = "bad thing") -> str:
    """Always fails with the reason."""
    raise ToolError(f"it failed: {reason}")


@server.tool()
def secret() -> str:
    """A tool no registration allows."""
    return "the secret"


def app_with_token(token: str):
    inner = server.streamable_http_app(stateless_http=True)

    async def app(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await JSONResponse({"error": "who are you"}, status_code=401)(scope, receive, send)
                return
        await inner(scope, receive, send)

    return app, inner


if __name__ == "__main__":
    port, token = int(sys.argv[1]), sys.argv[2]
    app, inner = app_with_token(token)

    async def serve():
        async with server.session_manager.run():
            await uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
            ).serve()

    import anyio

    anyio.run(serve)
