"""The same API tokens as REST, in front of the MCP and A2A endpoints.

``Authorization: Token <key>`` or ``Bearer <key>`` (what MCP and A2A clients send)
is resolved to its active user through ``accounts.authentication`` exactly as the
REST API and the websockets resolve it; anything else answers 401 with the API's JSON
error shape before a byte reaches the SDKs. Each request also counts against the
user's REST rate limit (THROTTLE_USER_RATE, one budget over REST, MCP and A2A): over it,
a 429 with ``Retry-After``. The user is left in ``scope["user"]`` as a
Starlette user (the A2A SDK reads that) wrapping the Django user (our code reads that).
"""

from __future__ import annotations

import json
import math

from channels.db import database_sync_to_async
from starlette.authentication import BaseUser

from accounts.authentication import user_for_raw_token
from accounts.ws_auth import _token_from


class AgentbusUser(BaseUser):
    def __init__(self, user) -> None:
        self.django_user = user

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.django_user.get_username()

    @property
    def identity(self) -> str:
        return str(self.django_user.pk)


def django_user_of(scope) -> object:
    """The Django user a request was authenticated as (TokenAuth ran before)."""
    user = scope.get("user")
    if not isinstance(user, AgentbusUser):
        raise PermissionError("the request was not authenticated")
    return user.django_user


async def _refuse(send, detail: str, *, status: int = 401, error: str = "not_authenticated", headers=()) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    if status == 401:
        headers = [*headers, (b"www-authenticate", b'Bearer realm="agentbus"')]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _rate_wait(user) -> float | None:
    """Seconds until the user may call again (REST's user throttle, same Redis key);
    None when admitted."""
    from redis.exceptions import RedisError

    from core.throttling import UserRateThrottle, rate_take

    throttle = UserRateThrottle()
    if throttle.rate is None:
        return None
    try:
        return rate_take(f"user:{user.pk}", limit=throttle.num_requests, period=throttle.duration)
    except RedisError:
        return None  # as for REST: rate limiting must not take the API down


class TokenAuth:
    """ASGI middleware: a valid API token, or a 401."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = _token_from(scope)
        if not raw:
            await _refuse(send, "Authentication credentials were not provided: send 'Authorization: Bearer <token>'.")
            return
        user = await database_sync_to_async(user_for_raw_token)(raw)
        if user is None:
            await _refuse(send, "Invalid or revoked token.")
            return
        wait = await database_sync_to_async(_rate_wait, thread_sensitive=False)(user)
        if wait is not None:
            retry_after = str(max(1, math.ceil(wait))).encode()
            await _refuse(
                send,
                f"Request was throttled. Expected available in {retry_after.decode()} seconds.",
                status=429,
                error="throttled",
                headers=[(b"retry-after", retry_after)],
            )
            return
        await self.app(dict(scope, user=AgentbusUser(user)), receive, send)
