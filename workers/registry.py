"""Kept so that agent modules written against the first version (``from workers.registry
import agent, NonRetryableError``) still load; the registry is ``agents.registry``."""

from __future__ import annotations

from agents.errors import NonRetryableError
from agents.registry import AgentSpec, agent, agent_get

__all__ = ["AgentSpec", "NonRetryableError", "agent", "agent_get"]
