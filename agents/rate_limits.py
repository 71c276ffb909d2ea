"""Per-agent rate limits, as LLM providers impose them: requests per minute
(``rate_limit_rpm``) and tokens per minute (``rate_limit_tpm``), counted in Redis so
they hold over every worker and orchestrator.

Two sliding-window logs per limited agent, sorted sets scored by the time of the entry:

* ``agentbus:agent:{name}:rate:requests``: one member per dispatched attempt (the
  caller's ``member``, e.g. ``"<task_id>:<attempt>"``), added by ``rate_reserve``;
* ``agentbus:agent:{name}:rate:tokens``: one member per LLM call that reported usage,
  ``"<tokens>|<member>|<nonce>"``, added by ``tokens_record``.

The window is ``AGENTBUS_RATE_WINDOW_SECONDS`` (60). Every call is one round trip, atomic
in Redis: a Lua script (``rate_release`` a single ZREM), so two dispatchers cannot both
take the last request of a window. Times are Redis's clock (``TIME``) in integer milliseconds, so
hosts with skewed clocks share one window, and scores survive Lua's number-to-string
conversion exactly.

A request is admitted while the window holds fewer than rpm requests and (with a tpm)
fewer than tpm tokens; tokens are known only after a call, so one large call may carry
the window over the tpm, and the next request then waits until enough of them age out.

If Redis is flushed (or loses its data), the counters restart empty: the limits then
hold from the flush on, and up to one window's worth of extra requests may go out
right after it. Work is never lost: a waiting task lives in PostgreSQL, not here.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from redis.exceptions import RedisError

from agents.registry import AgentSpec
from core.redis import redis_client

logger = logging.getLogger(__name__)

# Shared by the scripts: the time now (ms, Redis's clock), and a function that drops
# what left the window and returns the request count, the token sum and the wait (ms)
# until one more request would be admitted (0: now).
#   KEYS: requests, tokens.  ARGV[1] window ms, ARGV[2] rpm (0: none), ARGV[3] tpm (0: none)
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
-- A member that is not ours (Redis is not trusted) counts 0 rather than failing the script.
local function entry_tokens(entry)
  return tonumber(string.match(entry, '^(%d+)|')) or 0
end
local function window_state()
  local since = now - window
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', since)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', since)
  local requests = redis.call('ZCARD', KEYS[1])
  local wait = 0
  if rpm > 0 and requests >= rpm then
    -- The (requests - rpm + 1)th oldest must leave before one more fits.
    local entry = redis.call('ZRANGE', KEYS[1], requests - rpm, requests - rpm, 'WITHSCORES')
    wait = tonumber(entry[2]) + window - now
  end
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local tokens = 0
  for i = 1, #entries, 2 do
    tokens = tokens + entry_tokens(entries[i])
  end
  if tpm > 0 and tokens >= tpm then
    -- Oldest first, until what stays in the window is under the limit.
    local left = tokens
    for i = 1, #entries, 2 do
      left = left - entry_tokens(entries[i])
      if left < tpm then
        wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
        break
      end
    end
  end
  return requests, tokens, wait
end
"""

# ARGV[4] member. Returns the wait in ms: 0 when the request was recorded. A member
# already in the window is admitted again without a second entry (a retried call).
_RESERVE = (
    _PRELUDE
    + """
local requests, tokens, wait = window_state()
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  return 0
end
if wait > 0 then
  return wait
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window + 1000)
return 0
"""
)

# ARGV[4] the entry "<tokens>|<member>|<nonce>".
_TOKENS = (
    _PRELUDE
    + """
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('PEXPIRE', KEYS[2], window + 1000)
return 1
"""
)

# Returns {requests, tokens, wait ms}.
_STATE = (
    _PRELUDE
    + """
local requests, tokens, wait = window_state()
return {requests, tokens, wait}
"""
)


def _limited(spec: AgentSpec) -> bool:
    return bool(spec.rate_limit_rpm or spec.rate_limit_tpm)


def _eval(script: str, spec: AgentSpec, *extra: str | int):
    window_ms = max(1, round(settings.AGENTBUS_RATE_WINDOW_SECONDS * 1000))
    prefix = f"agentbus:agent:{spec.name}:rate"
    return redis_client().eval(
        script,
        2,
        f"{prefix}:requests",
        f"{prefix}:tokens",
        window_ms,
        spec.rate_limit_rpm or 0,
        spec.rate_limit_tpm or 0,
        *extra,
    )


def rate_reserve(spec: AgentSpec, *, member: str) -> float:
    """Take one request of the agent's window for ``member`` (e.g. ``"task_id:attempt"``).

    Returns 0.0 when it was taken (or the agent has no limits: Redis is not touched),
    else the seconds until the window admits one more request (> 0); nothing is
    recorded then. A ``member`` already in the window is admitted again without a
    second entry, so a dispatch retried after a crash costs one request, not two.
    Redis errors are raised: the caller decides whether to send anyway.
    """
    if not _limited(spec):
        return 0.0
    return int(_eval(_RESERVE, spec, member)) / 1000


def rate_release(spec: AgentSpec, *, member: str) -> None:
    """Give back a reservation whose task was not sent after all (one ZREM; a member
    not in the window is a no-op). Redis errors are raised; an unreleased reservation
    only costs its slot until it ages out of the window."""
    if not _limited(spec):
        return
    redis_client().zrem(f"agentbus:agent:{spec.name}:rate:requests", member)


def tokens_record(spec: AgentSpec, tokens: int, *, member: str) -> None:
    """Count the tokens an LLM call of the agent reported, toward its tpm.

    Recorded for every rate-limited agent (so GET /agents shows the tokens of an
    rpm-only agent too); nothing for an unlimited one. Never raises: a lost count must
    not fail a task whose call already succeeded.
    """
    if not _limited(spec) or tokens <= 0:
        return
    entry = f"{int(tokens)}|{member}|{uuid.uuid4().hex[:12]}"
    try:
        _eval(_TOKENS, spec, entry)
    except RedisError as exc:
        logger.debug("tokens of agent %s not recorded: %s", spec.name, exc)


def rate_state(spec: AgentSpec) -> dict | None:
    """The agent's limits and its window now (GET /agents, metrics); None if unlimited."""
    if not _limited(spec):
        return None
    requests, tokens, wait_ms = _eval(_STATE, spec)
    return {
        "rpm": spec.rate_limit_rpm,
        "tpm": spec.rate_limit_tpm,
        "requests_last_minute": int(requests),
        "tokens_last_minute": int(tokens),
        "wait_seconds": int(wait_ms) / 1000,
    }
