"""Leader election: one orchestrator acts, the others stand by.

The leader holds a Redis key with a TTL and renews it on every pass; a standby takes
the key when it expires (the leader died or hung). Correctness never depends on the
lock: every decision is a conditional UPDATE under a row lock in PostgreSQL. The lock
only keeps standbys from doing duplicate work, so a brief overlap (Redis flushed) is
harmless.
"""

from __future__ import annotations

import os
import socket
import uuid

from core.heartbeats import LEADER_KEY, leader_identity  # noqa: F401 (read by tests and ops)
from core.redis import redis_client

# Renew only if we still hold it: compare-and-expire in one atomic step.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, ttl: float) -> None:
        self.ttl_ms = int(ttl * 1000)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False

    def hold(self) -> bool:
        """Take or renew the lock; True while this process leads."""
        client = redis_client()
        if self.held and client.eval(_RENEW, 1, LEADER_KEY, self.identity, self.ttl_ms):
            return True
        self.held = bool(client.set(LEADER_KEY, self.identity, nx=True, px=self.ttl_ms))
        return self.held

    def release(self) -> None:
        if self.held:
            redis_client().eval(_RELEASE, 1, LEADER_KEY, self.identity)
            self.held = False
