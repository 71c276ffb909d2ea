"""The agent registry: every agent the platform can route tasks to, by name.

An agent is declared once and known to every process (web validates plans against it,
the orchestrator routes by its queue, workers run it). Python agents register with the
``@agent`` decorator in a module listed in ``AGENTBUS_AGENT_MODULES`` (the built-ins in
``workers.agents`` always load). The spec carries ``kind`` so HTTP and LLM agents,
declared in settings or by staff at run time, share the same routing and policies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings


class NonRetryableError(Exception):
    """Raised by an agent for a failure that another attempt cannot fix."""


@dataclass(frozen=True)
class AgentSpec:
    name: str
    kind: str  # "python" here; "http" and "llm" run through the same spec
    queue: str = "default"
    timeout: int = 300
    max_attempts: int = 3
    description: str = ""
    handler: Callable[..., Any] | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "queue": self.queue,
            "timeout": self.timeout,
            "max_attempts": self.max_attempts,
            "description": self.description,
        }


_registry: dict[str, AgentSpec] = {}


def agent(
    name: str,
    *,
    queue: str = "default",
    timeout: int = 300,
    max_attempts: int = 3,
    description: str = "",
) -> Callable:
    """Register a Python function as an agent: ``def my_agent(ctx) -> output``."""

    def register(func: Callable) -> Callable:
        agent_register(
            AgentSpec(
                name=name,
                kind="python",
                queue=queue,
                timeout=timeout,
                max_attempts=max_attempts,
                description=description or (func.__doc__ or "").strip().split("\n")[0],
                handler=func,
            )
        )
        return func

    return register


def agent_register(spec: AgentSpec) -> None:
    _registry[spec.name] = spec


def agent_get(name: str) -> AgentSpec | None:
    return _registry.get(name)


def agents_all() -> list[AgentSpec]:
    return sorted(_registry.values(), key=lambda spec: spec.name)


def agents_load() -> None:
    """Import the modules that declare agents (idempotent; runs in AppConfig.ready)."""
    for module in ["workers.agents", *settings.AGENTBUS_AGENT_MODULES]:
        importlib.import_module(module)
