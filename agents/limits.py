"""Per-agent concurrency limits, counted in Redis so they hold over every worker.

Each running task of a limited agent holds a slot: a member of a sorted set scored by
the time its hold expires (its timeout plus a grace), so a slot whose worker died is
reclaimed without anyone releasing it. Acquiring is one Lua script, atomic in Redis.
"""

from __future__ import annotations

import time

from agents.registry import AgentSpec
from core.redis import redis_client

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""

GRACE = 60


def _key(spec: AgentSpec) -> str:
    return f"agentbus:agent:{spec.name}:running"


def slot_acquire(spec: AgentSpec, *, task_id: str, hold_seconds: float) -> bool:
    """Take a slot for this task; False when the agent already runs its limit."""
    if not spec.concurrency:
        return True
    now = time.time()
    ttl = int(hold_seconds + GRACE)
    return bool(
        redis_client().eval(_ACQUIRE, 1, _key(spec), now, now + hold_seconds + GRACE, task_id, spec.concurrency, ttl)
    )


def slot_release(spec: AgentSpec, *, task_id: str) -> None:
    if spec.concurrency:
        redis_client().zrem(_key(spec), task_id)


def slots_in_use(spec: AgentSpec) -> int:
    if not spec.concurrency:
        return 0
    client = redis_client()
    client.zremrangebyscore(_key(spec), "-inf", time.time())
    return client.zcard(_key(spec))
