"""MCP servers as agents: a task of kind ``mcp`` calls one tool of a staff-registered
MCP server over streamable HTTP (the official ``mcp`` client), and Python agents call
tools with ``ctx.mcp(server, tool, arguments)``.

A task's input is ``{"tool": name, "arguments": {...}}`` (``tool`` may be left out
when the server allows exactly one); its output is the tool's structured result (or
its text, parsed when it is JSON). Only the registration's ``allowed_tools`` may be called, and only at the
registered URL: user input names a server and a tool, never an address. A tool's
error is the task's failure with its message, not retried (the same call would fail
again); a server that cannot be reached, answers 5xx or times out is retried with
backoff and counts against the server's circuit breaker.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2

from agents.breakers import breaker_for
from agents.registry import AgentSpec, NonRetryableError, agent_get


class McpServerError(Exception):
    """The server could not be reached or failed (another attempt may work)."""


class McpToolError(NonRetryableError):
    """The tool ran and reported an error."""


def mcp_agent_run(spec: AgentSpec, ctx) -> Any:
    task_input = ctx.input or {}
    tool = task_input.get("tool")
    if tool is None and len(spec.allowed_tools) == 1:
        tool = spec.allowed_tools[0]
    if not isinstance(tool, str):
        raise NonRetryableError(f"input.tool: name one of the tools of '{spec.name}': {', '.join(spec.allowed_tools)}")
    arguments = task_input.get("arguments", {})
    if not isinstance(arguments, dict):
        raise NonRetryableError("input.arguments must be an object")
    return mcp_call(spec, tool, arguments, timeout=spec.timeout)


def mcp_call_registered(server: str, tool: str, arguments: dict, *, timeout: float) -> Any:
    """``ctx.mcp``: a tool of the MCP server registered under ``server``."""
    spec = agent_get(server)
    if spec is None or spec.kind != "mcp":
        raise NonRetryableError(f"no MCP server is registered as '{server}'")
    return mcp_call(spec, tool, arguments, timeout=min(timeout, spec.timeout))


def mcp_call(spec: AgentSpec, tool: str, arguments: dict, *, timeout: float) -> Any:
    if tool not in spec.allowed_tools:
        raise NonRetryableError(f"tool '{tool}' of MCP server '{spec.name}' is not allowed for tasks")
    return breaker_for(spec).call(lambda: asyncio.run(_call(spec, tool, arguments, timeout)))


async def _call(spec: AgentSpec, tool: str, arguments: dict, timeout: float) -> Any:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    from agents.protocols import auth_header_split

    headers = {"User-Agent": "agentbus-worker", **auth_header_split(spec.auth_header)}
    # The SDK reports a failed HTTP exchange as a JSON-RPC error without its status;
    # the status decides whether another attempt may work, so it is kept here.
    refused: list[int] = []

    async def keep_error_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            refused.append(response.status_code)

    try:
        async with (
            # Redirects are not followed: the worker talks only to the URL staff registered.
            httpx2.AsyncClient(
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
                event_hooks={"response": [keep_error_status]},
            ) as http,
            Client(streamable_http_client(spec.url, http_client=http)) as client,
        ):
            result = await asyncio.wait_for(client.call_tool(tool, arguments), timeout)
    except Exception as raised:  # the client's task groups wrap errors in ExceptionGroups
        exc = _leaf(raised)
        if refused:
            status = refused[-1]
            if status >= 500 or status in (408, 429):
                raise McpServerError(f"MCP server '{spec.name}' answered HTTP {status}") from None
            raise NonRetryableError(f"MCP server '{spec.name}' answered HTTP {status}") from None
        if isinstance(exc, MCPError):  # the server refused the call itself (unknown tool, bad arguments)
            raise NonRetryableError(f"MCP server '{spec.name}' refused {tool}: {exc}") from None
        if isinstance(exc, TimeoutError | httpx2.TimeoutException):
            raise McpServerError(f"no answer from MCP server '{spec.name}' within {timeout}s") from None
        if isinstance(exc, httpx2.HTTPStatusError):
            status = exc.response.status_code
            if status >= 500 or status in (408, 429):
                raise McpServerError(f"MCP server '{spec.name}' answered HTTP {status}") from None
            raise NonRetryableError(f"MCP server '{spec.name}' answered HTTP {status}") from None
        if isinstance(exc, httpx2.HTTPError | OSError):
            raise McpServerError(f"cannot reach MCP server '{spec.name}': {exc}") from None
        raise
    text = "\n".join(getattr(block, "text", "") for block in result.content if getattr(block, "text", None))
    if result.is_error:
        raise McpToolError(f"tool {tool} of '{spec.name}' failed: {text or 'no message'}")
    if result.structured_content is not None:
        return result.structured_content
    try:  # many tools return JSON as text
        parsed = json.loads(text)
    except ValueError:
        return {"text": text}
    return parsed if isinstance(parsed, dict) else {"result": parsed}


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
