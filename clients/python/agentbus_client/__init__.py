"""agentbus_client: a Python client (sync and async) and the ``agentbus`` command."""

from __future__ import annotations

from agentbus_client.client import AsyncClient, Client, Event
from agentbus_client.errors import (
    AgentbusError,
    ApiError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    TransportError,
)

__version__ = "0.1.0"
__all__ = [
    "AgentbusError",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "Event",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "TransportError",
]
