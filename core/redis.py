"""The one Redis client of the process, built from REDIS_URL.

redis-py parses redis://, rediss:// (TLS) and unix:// URLs with passwords and ACL users,
so operators configure all of it through REDIS_URL. One pool per process; a forked
child must call ``redis_reset()`` (RQ's SimpleWorker does not fork).
"""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30, socket_keepalive=True)


def redis_reset() -> None:
    redis_client.cache_clear()
