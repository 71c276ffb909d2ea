"""API rate limits counted in Redis, so they hold however many web replicas run.

DRF's own throttles keep a request history in the cache with a read-modify-write, which
under concurrent requests on several replicas undercounts. Here each check is one Lua
script, atomic in Redis: a sliding window (a sorted set of request times, by Redis's
own clock so replicas with skewed clocks agree) that admits a request only while fewer
than N fall within the last period. A refusal says when the oldest request leaves the
window, which DRF sends as ``Retry-After``.

``THROTTLE_USER_RATE`` limits each authenticated user, ``THROTTLE_ANON_RATE`` each
client IP without credentials. The IP is ``REMOTE_ADDR`` unless ``AGENTBUS_NUM_PROXIES``
says how many trusted proxies append to ``X-Forwarded-For``, so a client cannot pick a
fresh address per request by sending that header itself. If Redis is unreachable the
limiter lets requests through (and logs): rate limiting must not take the API down.
"""

from __future__ import annotations

import logging
import math
import uuid

from redis.exceptions import RedisError
from rest_framework import throttling

from core.redis import redis_client

logger = logging.getLogger(__name__)

KEY_PREFIX = "agentbus:throttle"

# KEYS[1] the window; ARGV: limit, period in microseconds, a unique member.
# Returns {1, 0} when admitted, {0, microseconds until a slot frees} when refused.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000))
    return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + period - now}
"""


def rate_take(key: str, *, limit: int, period: float) -> float | None:
    """Count one request against ``key``; None if admitted, else seconds to wait."""
    admitted, wait_us = redis_client().eval(
        _SLIDING_WINDOW,
        1,
        f"{KEY_PREFIX}:{key}",
        limit,
        int(period * 1_000_000),
        uuid.uuid4().hex,
    )
    return None if admitted else max(0.0, int(wait_us) / 1_000_000)


class _RedisRateThrottle(throttling.SimpleRateThrottle):
    """DRF's rate parsing and cache keys, with the counting done atomically in Redis."""

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            self.wait_seconds = rate_take(key, limit=self.num_requests, period=self.duration)
        except RedisError as exc:
            logger.warning("rate limiter unavailable (%s); request let through", exc)
            return True
        return self.wait_seconds is None

    def wait(self) -> float | None:
        wait = getattr(self, "wait_seconds", None)
        # Retry-After is whole seconds; rounding down would invite a retry that fails.
        return None if wait is None else max(1, math.ceil(wait))


class UserRateThrottle(_RedisRateThrottle):
    """Each authenticated user gets THROTTLE_USER_RATE (anonymous callers are left to
    AnonRateThrottle)."""

    scope = "user"

    def get_cache_key(self, request, view) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return f"user:{request.user.pk}"


class AnonRateThrottle(_RedisRateThrottle):
    """Each client IP without credentials gets THROTTLE_ANON_RATE."""

    scope = "anon"

    def get_cache_key(self, request, view) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return f"anon:{self.get_ident(request)}"
