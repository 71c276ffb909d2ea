"""Agents that speak an open protocol: ``mcp`` (one tool of a registered MCP server)
and ``a2a`` (a remote A2A agent). Staff register them like HTTP agents; this module
checks their configuration and runs a task of either kind."""

from __future__ import annotations

from agents.registry import AgentSpec


def auth_header_split(header: str) -> dict[str, str]:
    """``"Authorization: Bearer x"`` as ``{"Authorization": "Bearer x"}``; "" as {}."""
    if not header:
        return {}
    name, _, value = header.partition(":")
    return {name.strip(): value.strip()}


def protocol_agent_config_errors(data: dict) -> dict[str, list[str]]:
    """What is wrong with an mcp or a2a agent's configuration, by field."""
    kind = data.get("kind")
    if kind not in ("mcp", "a2a"):
        return {}
    errors: dict[str, list[str]] = {}
    if not data.get("url"):
        errors["url"] = ["required: the MCP server's endpoint" if kind == "mcp" else "required: the agent card's URL"]
    header = data.get("auth_header") or ""
    if header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip() or not value.strip() or any(c in header for c in "\r\n"):
            errors["auth_header"] = ['must be one "Name: value" header']
    if kind == "mcp" and not data.get("allowed_tools"):
        errors["allowed_tools"] = ["name at least one tool tasks may call"]
    return errors


def protocol_agent_run(spec: AgentSpec, ctx):
    if spec.kind == "mcp":
        from agents.mcp import mcp_agent_run

        return mcp_agent_run(spec, ctx)
    from agents.a2a import a2a_agent_run

    return a2a_agent_run(spec, ctx)
