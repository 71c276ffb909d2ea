"""Per-agent rate limits (agents.rate_limits) against the real Redis: requests and
tokens per sliding window, over concurrent callers, shown in GET /agents and /metrics.

Here beside the other agent tests (test_registry, test_limits): a tests/agents/ package
would shadow tests/agents.py, the test agents every process loads.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from bisect import bisect_left

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from agents.models import AgentDefinition
from agents.rate_limits import rate_release, rate_reserve, rate_state, tokens_record
from agents.registry import AgentSpec, _registry, agent, agent_get, agent_register, agents_from_file

WINDOW = 1.0  # seconds; the real one is a minute


@pytest.fixture
def window(settings, redis_flushed):
    """A one-second window, and the real Redis of the suite."""
    settings.AGENTBUS_RATE_WINDOW_SECONDS = WINDOW
    return WINDOW


def limited(*, rpm: int | None = None, tpm: int | None = None) -> AgentSpec:
    # A fresh name per test: the windows live in Redis, shared by the whole session.
    return AgentSpec(name=f"rl-{uuid.uuid4().hex[:10]}", kind="llm", rate_limit_rpm=rpm, rate_limit_tpm=tpm)


def admitted_at(spec: AgentSpec, member: str, client: redis.Redis) -> float:
    """When Redis admitted ``member``, in seconds of Redis's clock (the entry's score)."""
    score = client.zscore(f"agentbus:agent:{spec.name}:rate:requests", member)
    assert score is not None, f"{member} was admitted but is not in the window"
    return score / 1000


def redis_now(client: redis.Redis) -> float:
    """Redis's clock, which the windows use, in seconds."""
    seconds, micros = client.time()
    return seconds + micros / 1e6


def busiest_window(times: list[float], width: float) -> int:
    """The most entries in any window [t, t + width) over the sorted ``times``; every
    window's count changes only at an entry, so starting one at each entry covers all."""
    return max((bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


def test_concurrent_reservations_never_exceed_the_rpm_in_any_sliding_window(window, redis_flushed):
    spec = limited(rpm=20)
    admitted: list[float] = []
    refused = 0
    lock = threading.Lock()
    deadline = time.monotonic() + 3.0

    def hammer(thread: int) -> None:
        nonlocal refused
        for i in range(10**6):
            if time.monotonic() > deadline:
                return
            member = f"t{thread}:{i}"
            wait = rate_reserve(spec, member=member)
            if wait == 0.0:
                at = admitted_at(spec, member, redis_flushed)
                with lock:
                    admitted.append(at)
            else:
                assert 0 < wait <= window
                with lock:
                    refused += 1
                # Come back about when the window opens, so that many threads race
                # for each slot that frees.
                time.sleep(min(wait, 0.05))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    admitted.sort()
    busiest = busiest_window(admitted, window)
    assert busiest <= 20, f"{busiest} requests in one window"
    # The limit throttled, and was used in full: about 20 a second for 3 s.
    assert busiest == 20 and refused > 100
    assert len(admitted) >= 50, len(admitted)


def test_the_wait_returned_is_exactly_when_the_window_admits_the_next_request(window, redis_flushed):
    spec = limited(rpm=3)
    assert [rate_reserve(spec, member=f"m{i}") for i in range(3)] == [0.0, 0.0, 0.0]
    oldest = admitted_at(spec, "m0", redis_flushed)

    before = redis_now(redis_flushed)
    wait = rate_reserve(spec, member="m3")
    after = redis_now(redis_flushed)
    # The oldest request's time + the window - now, "now" being when the script ran.
    assert oldest + window - after - 0.001 <= wait <= oldest + window - before + 0.001
    state = rate_state(spec)
    assert state["requests_last_minute"] == 3 and 0 < state["wait_seconds"] <= wait

    time.sleep(wait)
    assert rate_reserve(spec, member="m3") == 0.0


def test_reserving_the_same_member_twice_counts_one_request(window):
    spec = limited(rpm=2)
    assert rate_reserve(spec, member="task:1") == 0.0
    assert rate_reserve(spec, member="task:1") == 0.0
    assert rate_state(spec)["requests_last_minute"] == 1


def test_a_released_reservation_frees_its_slot(window):
    spec = limited(rpm=2)
    assert rate_reserve(spec, member="a:1") == 0.0
    assert rate_reserve(spec, member="b:1") == 0.0
    assert rate_reserve(spec, member="c:1") > 0

    rate_release(spec, member="a:1")

    assert rate_reserve(spec, member="c:1") == 0.0
    assert rate_reserve(spec, member="d:1") > 0


def test_tokens_over_the_tpm_hold_requests_until_enough_of_them_age_out(window, redis_flushed):
    spec = limited(tpm=1000)
    assert rate_reserve(spec, member="a:1") == 0.0
    tokens_record(spec, 600, member="a:1")
    assert rate_reserve(spec, member="b:1") == 0.0  # 600 < 1000
    time.sleep(0.3)
    tokens_record(spec, 500, member="b:1")
    (_, first), _ = redis_flushed.zrange(f"agentbus:agent:{spec.name}:rate:tokens", 0, -1, withscores=True)

    before = redis_now(redis_flushed)
    wait = rate_reserve(spec, member="c:1")
    after = redis_now(redis_flushed)
    # 1100 tokens: the first 600 leaving is enough, not both entries.
    assert first / 1000 + window - after - 0.001 <= wait <= first / 1000 + window - before + 0.001
    assert rate_state(spec)["tokens_last_minute"] == 1100

    time.sleep(wait)
    assert rate_reserve(spec, member="c:1") == 0.0
    assert rate_state(spec)["tokens_last_minute"] == 500


def test_the_wait_is_the_longer_of_the_two_limits(window, redis_flushed):
    spec = limited(rpm=1, tpm=100)
    assert rate_reserve(spec, member="a:1") == 0.0
    time.sleep(0.4)
    tokens_record(spec, 150, member="a:1")  # ages out 0.4 s after the request does
    ((_, recorded),) = redis_flushed.zrange(f"agentbus:agent:{spec.name}:rate:tokens", 0, -1, withscores=True)

    before = redis_now(redis_flushed)
    wait = rate_reserve(spec, member="b:1")
    after = redis_now(redis_flushed)
    assert recorded / 1000 + window - after - 0.001 <= wait <= recorded / 1000 + window - before + 0.001


def test_an_agent_without_limits_never_touches_redis(monkeypatch):
    def no_redis():
        raise AssertionError("Redis was called for an unlimited agent")

    monkeypatch.setattr("agents.rate_limits.redis_client", no_redis)
    spec = AgentSpec(name="free", kind="python")
    assert rate_reserve(spec, member="x:1") == 0.0
    rate_release(spec, member="x:1")
    tokens_record(spec, 500, member="x:1")
    assert rate_state(spec) is None


def test_recording_tokens_never_raises_when_redis_is_down(monkeypatch, window):
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr("agents.rate_limits.redis_client", lambda: dead)
    tokens_record(limited(tpm=10), 50, member="x:1")


# --- declarations, GET /agents and /metrics ------------------------------------------


def test_staff_declare_rate_limits_and_everyone_sees_the_window_in_get_agents(staff, alice, redis_flushed):
    name = f"rl-{uuid.uuid4().hex[:10]}"
    body = {"name": name, "kind": "http", "url": "http://127.0.0.1:8149/", "secret": "k-secret"}
    response = staff.post("/agents", {**body, "rate_limit_rpm": 5, "rate_limit_tpm": 1000}, format="json")
    assert response.status_code == 201, response.content
    spec = agent_get(name)
    assert (spec.rate_limit_rpm, spec.rate_limit_tpm) == (5, 1000)
    assert rate_reserve(spec, member="t:1") == 0.0
    tokens_record(spec, 40, member="t:1")

    listed = {a["name"]: a for a in alice.get("/agents").json()["agents"]}
    assert listed[name]["rate_limit_rpm"] == 5 and listed[name]["rate_limit_tpm"] == 1000
    assert listed[name]["rate_limit"] == {
        "rpm": 5,
        "tpm": 1000,
        "requests_last_minute": 1,
        "tokens_last_minute": 40,
        "wait_seconds": 0.0,
    }
    echo = listed["echo"]
    assert echo["rate_limit"] is None and echo["rate_limit_rpm"] is None and echo["rate_limit_tpm"] is None


@pytest.mark.parametrize(
    ("limit", "value"),
    [
        ("rate_limit_rpm", 0),
        ("rate_limit_rpm", "abc"),
        ("rate_limit_rpm", -1),
        ("rate_limit_rpm", 1.5),
        ("rate_limit_rpm", True),
        ("rate_limit_tpm", 0),
        ("rate_limit_tpm", "abc"),
    ],
)
def test_a_bad_rate_limit_is_a_400_naming_the_field(staff, limit, value):
    body = {"name": "x", "kind": "http", "url": "http://a.b/", "secret": "k", limit: value}
    response = staff.post("/agents", body, format="json")
    assert response.status_code == 400
    assert limit in response.json()["fields"]
    assert not AgentDefinition.objects.exists()


def test_the_database_refuses_a_zero_rate_limit(db):
    with pytest.raises(IntegrityError):
        AgentDefinition.objects.create(name="zero", kind="http", url="http://a.b/", rate_limit_rpm=0)


def test_the_settings_file_declares_rate_limits(tmp_path):
    path = tmp_path / "agents.json"
    path.write_text(
        json.dumps([{"name": "writer", "kind": "llm", "base_url": "http://127.0.0.1:8149/v1", "rate_limit_tpm": 9}])
    )
    (spec,) = agents_from_file(str(path))
    assert (spec.rate_limit_rpm, spec.rate_limit_tpm) == (None, 9)

    path.write_text(
        json.dumps([{"name": "writer", "kind": "llm", "base_url": "http://127.0.0.1:8149/v1", "rate_limit_rpm": 0}])
    )
    with pytest.raises(ImproperlyConfigured, match="rate_limit_rpm"):
        agents_from_file(str(path))


def test_the_decorator_declares_rate_limits_and_refuses_zero():
    with pytest.raises(ImproperlyConfigured, match="rate_limit_rpm"):
        agent("never-registered", rate_limit_rpm=0)
    assert agent_get("never-registered") is None


@pytest.fixture
def code_agent_limited():
    spec = limited(rpm=7, tpm=500)
    agent_register(spec)
    yield spec
    _registry.pop(spec.name, None)


def test_metrics_show_each_limited_agents_window_and_limits(db, settings, code_agent_limited):
    spec = code_agent_limited
    rate_reserve(spec, member="t:1")
    rate_reserve(spec, member="t:2")
    tokens_record(spec, 300, member="t:1")

    settings.AGENTBUS_METRICS_TOKEN = "scrape"
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape")
    assert response.status_code == 200
    samples = {
        (s.name, s.labels.get("agent")): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    assert samples[("agentbus_agent_rate_limit_requests", spec.name)] == 2
    assert samples[("agentbus_agent_rate_limit_tokens", spec.name)] == 300
    assert samples[("agentbus_agent_rate_limit_rpm", spec.name)] == 7
    assert samples[("agentbus_agent_rate_limit_tpm", spec.name)] == 500
    assert samples[("agentbus_agent_rate_limit_wait_seconds", spec.name)] == 0
    assert ("agentbus_agent_rate_limit_requests", "echo") not in samples  # unlimited: no series


def test_a_token_entry_that_is_not_ours_counts_nothing_instead_of_failing(window, redis_flushed):
    spec = limited(tpm=100)
    redis_flushed.zadd(f"agentbus:agent:{spec.name}:rate:tokens", {"garbage": time.time() * 1000})
    tokens_record(spec, 30, member="a:1")
    assert rate_state(spec)["tokens_last_minute"] == 30
    assert rate_reserve(spec, member="a:1") == 0.0
