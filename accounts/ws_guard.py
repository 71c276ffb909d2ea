"""Websockets re-check their credentials and their access while they are open.

A handshake decides who is on the other end once; a socket then lives for hours. So each
consumer (jobs.consumers, jobs.reviews.consumers) mixes in :class:`CredentialRecheck`,
which every ``AGENTBUS_WS_RECHECK_INTERVAL`` seconds, and at once when told, checks again:

1. the credentials: the token (by its digest, kept in the scope by ws_auth) still exists,
   has not expired and its user is active; or the session still exists in the session
   store and still matches the user's password hash (Django's own ``get_user``);
2. the access: the consumer's ``access_still_granted(user)`` (the job is still visible
   to this user; staff groups only while the user is staff).

Failing 1 closes with 4401, failing 2 with 4403. The mixin also bounds what a socket
costs: at most ``AGENTBUS_WS_MAX_PER_USER`` open sockets per user across replicas (a
Redis sorted set of the user's sockets, each refreshed by its periodic check; beyond it
the new socket closes with 4429), and at most ``AGENTBUS_WS_SEND_QUEUE`` frames waiting
for a reader: a reader slower than its feed is dropped with 4408 rather than growing the
server's memory without bound (it reconnects and catches up from the event log). "Told" is a message on the user's
``auth.user.<id>`` group, sent after a logout, a token's revocation, a password change
or a deactivation (accounts.signals). Such a message carries nothing but "check now", so
one forged in Redis can only cause a check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.utils.module_loading import import_string
from redis.exceptions import RedisError

from accounts.authentication import user_for_digest
from core.channels import group_send_nowait
from core.redis import redis_client

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_MANY = 4429


def auth_group(user_id) -> str:
    return f"auth.user.{user_id}"


def auth_recheck_notify(user_id) -> None:
    """Ask every open socket of this user to check its credentials now."""
    group_send_nowait(auth_group(user_id), {"type": "auth.recheck"})


def _session_store(session_key: str):
    return import_string(settings.SESSION_ENGINE + ".SessionStore")(session_key=session_key)


def credentials_user(scope):
    """The user the socket's credentials name now, or None (revoked, expired, logged out)."""
    if scope.get("auth_method") == "token":
        digest = scope.get("auth_token_digest")
        return user_for_digest(digest) if digest else None
    session_key = getattr(scope.get("session"), "session_key", None)
    if not session_key:
        return None
    # A fresh read of the store: the scope's copy was loaded at the handshake.
    user = get_user(SimpleNamespace(session=_session_store(session_key)))
    return user if user.is_authenticated else None


def _sockets_key(user_id) -> str:
    return f"agentbus:ws:user:{user_id}"


def _max_sockets() -> int:
    return settings.AGENTBUS_WS_MAX_PER_USER


def _socket_register(user_id, channel_name: str) -> int:
    """Mark this socket alive now; how many live sockets the user has. A socket whose
    process died stops being refreshed and ages out after a few check intervals."""
    now = time.time()
    stale = now - max(90.0, 3 * settings.AGENTBUS_WS_RECHECK_INTERVAL)
    key = _sockets_key(user_id)
    pipe = redis_client().pipeline()
    pipe.zremrangebyscore(key, "-inf", stale)
    pipe.zadd(key, {channel_name: now})
    pipe.zcard(key)
    pipe.expire(key, 3600)
    try:
        return pipe.execute()[2]
    except RedisError as exc:  # like the rate limiter: a cap must not take sockets down
        logger.warning("socket count unavailable (%s); socket let through", exc)
        return 0


def _socket_unregister(user_id, channel_name: str) -> None:
    try:
        redis_client().zrem(_sockets_key(user_id), channel_name)
    except RedisError:
        pass  # it ages out


def long_connection_open(user_id, name: str) -> bool:
    """Count a long-lived connection other than a websocket (an SSE stream, jobs.stream_views)
    among the user's sockets, under the same AGENTBUS_WS_MAX_PER_USER; False (and not
    counted) beyond it. Call again at least every 90 s while it is open, and
    ``long_connection_close`` at its end (or it ages out)."""
    if _socket_register(user_id, name) > _max_sockets():
        _socket_unregister(user_id, name)
        return False
    return True


def long_connection_close(user_id, name: str) -> None:
    _socket_unregister(user_id, name)


class CredentialRecheck:
    """Mixin for AsyncWebsocketConsumer: ``await self.recheck_start()`` after accept(),
    ``await self.recheck_stop()`` in disconnect(); override ``access_still_granted``."""

    _recheck_task: asyncio.Task | None = None
    _auth_group: str | None = None
    _outbox: asyncio.Queue | None = None
    _writer: asyncio.Task | None = None
    _dropped = False

    async def access_still_granted(self, user) -> bool:
        return True

    async def recheck_start(self) -> None:
        self._auth_group = auth_group(self.scope["user"].pk)
        await self.channel_layer.group_add(self._auth_group, self.channel_name)
        self._recheck_task = asyncio.create_task(self._recheck_periodically())
        if await sync_to_async(_socket_register)(self.scope["user"].pk, self.channel_name) > _max_sockets():
            await sync_to_async(_socket_unregister)(self.scope["user"].pk, self.channel_name)
            await self.close(code=CLOSE_TOO_MANY)

    async def recheck_stop(self) -> None:
        if self._recheck_task is not None:
            self._recheck_task.cancel()
        if self._writer is not None:
            self._writer.cancel()
        if self._auth_group is not None:
            await self.channel_layer.group_discard(self._auth_group, self.channel_name)
            await sync_to_async(_socket_unregister)(self.scope["user"].pk, self.channel_name)

    async def send(self, text_data=None, bytes_data=None, close=False):
        """Queue a frame for the writer; a full queue means the reader cannot keep up."""
        if close or self._dropped:
            return await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        if self._outbox is None:
            self._outbox = asyncio.Queue(settings.AGENTBUS_WS_SEND_QUEUE)
            self._writer = asyncio.create_task(self._write())
        try:
            self._outbox.put_nowait((text_data, bytes_data))
        except asyncio.QueueFull:
            self._dropped = True
            logger.warning("dropped a websocket reader that fell %d frames behind", self._outbox.maxsize)
            self._writer.cancel()
            await self.close(code=CLOSE_TOO_SLOW)

    async def _write(self) -> None:
        while True:
            text_data, bytes_data = await self._outbox.get()
            await super().send(text_data=text_data, bytes_data=bytes_data)

    async def _recheck_periodically(self) -> None:
        try:
            while True:
                await asyncio.sleep(settings.AGENTBUS_WS_RECHECK_INTERVAL)
                if not await self.recheck_now():
                    return
                await sync_to_async(_socket_register)(self.scope["user"].pk, self.channel_name)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("re-checking a websocket's credentials failed; the socket closes")
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def recheck_now(self) -> bool:
        """True while the socket may stay open; otherwise it is closed with its reason."""
        user = await database_sync_to_async(credentials_user, thread_sensitive=False)(self.scope)
        if user is None or user.pk != self.scope["user"].pk:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        if not await self.access_still_granted(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        self.scope["user"] = user
        return True

    async def auth_recheck(self, message: dict) -> None:
        await self.recheck_now()
