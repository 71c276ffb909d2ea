"""Circuit breakers around the external calls agents make, one per agent, with their
state in Redis so every worker sees the same circuit.

When an agent's endpoint keeps failing (5xx, timeouts, refused connections) its circuit
opens after ``breaker_fail_max`` consecutive failures; while it is open, workers do not
call the endpoint at all: tasks of that agent wait and retry after the reset timeout
without spending an attempt (workers.tasks defers them). After the reset timeout one
trial call goes through (half-open): success closes the circuit, failure opens it again.
Errors that another attempt cannot fix (4xx, NonRetryableError) are the caller's, not
the endpoint's, so they do not count.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pybreaker

from agents.errors import TaskInterrupted
from agents.registry import AgentSpec, NonRetryableError
from core.redis import redis_client

NAMESPACE = "agentbus:breaker"

_lock = threading.Lock()
_breakers: dict[tuple, pybreaker.CircuitBreaker] = {}


def _not_the_endpoints_fault(exc: BaseException) -> bool:
    # A cancelled task is interrupted mid-call; a timeout does count against the endpoint.
    return isinstance(exc, TaskInterrupted) and exc.reason != "timeout"


def breaker_for(spec: AgentSpec) -> pybreaker.CircuitBreaker:
    key = (spec.name, spec.breaker_fail_max, spec.breaker_reset_timeout, id(redis_client()))
    with _lock:
        breaker = _breakers.get(key)
        if breaker is None:
            storage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, redis_client(), namespace=f"{NAMESPACE}:{spec.name}"
            )
            breaker = pybreaker.CircuitBreaker(
                fail_max=spec.breaker_fail_max,
                reset_timeout=spec.breaker_reset_timeout,
                exclude=[NonRetryableError, _not_the_endpoints_fault],
                state_storage=storage,
                name=spec.name,
                # The failure that trips the circuit is reported as itself (a failed
                # attempt); CircuitBreakerError then means only "not called: open".
                throw_new_error_on_trip=False,
            )
            _breakers[key] = breaker
        return breaker


def breaker_wait_seconds(spec: AgentSpec) -> float:
    """Seconds until the agent's open circuit lets a trial call through; 0 when calls
    may go ahead now (closed, half-open, or open with its reset timeout passed)."""
    breaker = breaker_for(spec)
    if breaker.current_state != pybreaker.STATE_OPEN:
        return 0.0
    opened_at = breaker._state_storage.opened_at  # pybreaker keeps it in the storage only
    if opened_at is None:
        return 0.0
    elapsed = (datetime.now(UTC) - opened_at).total_seconds()
    return max(0.0, spec.breaker_reset_timeout - elapsed)


def breaker_status(spec: AgentSpec) -> dict:
    """The circuit as GET /agents shows it."""
    breaker = breaker_for(spec)
    state = breaker.current_state
    opened_at = breaker._state_storage.opened_at if state != pybreaker.STATE_CLOSED else None
    return {
        "state": state,
        "failures": breaker.fail_counter,
        "fail_max": spec.breaker_fail_max,
        "reset_timeout": spec.breaker_reset_timeout,
        "opened_at": opened_at.isoformat() if opened_at else None,
        "retry_in": round(breaker_wait_seconds(spec), 3) if state == pybreaker.STATE_OPEN else 0.0,
    }


def breaker_reset(spec: AgentSpec) -> None:
    """Close the circuit (an operator's action, and tests)."""
    breaker_for(spec).close()
