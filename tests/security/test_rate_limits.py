"""API rate limits per user and per client IP, counted in Redis so they hold across
web replicas, and the per-user quota of unfinished jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from core.throttling import rate_take
from tests.conftest import ROOT, client_for, make_user, process_env, wait_for
from tests.faults.servers import RedisServer

WEB_PORTS = (8153, 8154)
THROTTLE_REDIS_PORT = 8155


def _call(
    port: int,
    path: str,
    *,
    token: str | None = None,
    body: dict | None = None,
    headers: dict | None = None,
):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST" if body is not None else "GET",
    )
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                dict(response.headers),
                json.loads(response.read() or b"null"),
            )
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


@pytest.fixture
def two_web_replicas(processes, tmp_path):
    """Two daphne servers, like two replicas behind a load balancer, sharing one Redis
    (their own, so no other test's requests count against these limits)."""
    server = RedisServer(THROTTLE_REDIS_PORT, tmp_path).start()
    env = process_env(
        REDIS_URL=server.url,
        THROTTLE_USER_RATE="6/min",
        THROTTLE_ANON_RATE="4/min",
        AGENTBUS_NUM_PROXIES="0",
    )
    procs = []
    for port in WEB_PORTS:
        log = open(tmp_path / f"web-{port}.log", "w")  # noqa: SIM115 (lives as long as the server)
        argv = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "agentbus_site.asgi:application",
        ]
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:

        def serving() -> bool:
            try:
                return all(_call(port, "/healthz")[0] == 200 for port in WEB_PORTS)
            except OSError:
                return False

        wait_for(serving, timeout=60, interval=0.3, message="both web replicas")
        yield WEB_PORTS
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_the_user_rate_limit_holds_across_two_web_processes(two_web_replicas):
    token = client_for(make_user("carol"))._credentials["HTTP_AUTHORIZATION"].split()[1]
    first, second = two_web_replicas
    answers = [_call((first, second)[i % 2], "/jobs", token=token) for i in range(8)]
    statuses = [status for status, _, _ in answers]
    # 6 per minute in all, alternating between the replicas: each saw only 3 or 4.
    assert statuses == [200] * 6 + [429, 429]
    _, headers, body = answers[6]
    assert body["error"] == "throttled" and "seconds" in body["detail"]
    assert 1 <= int(headers["Retry-After"]) <= 60

    # Another user has their own allowance.
    other = client_for(make_user("dave"))._credentials["HTTP_AUTHORIZATION"].split()[1]
    assert _call(second, "/jobs", token=other)[0] == 200


@pytest.mark.django_db(transaction=True)
def test_the_anonymous_rate_limit_is_per_ip_across_replicas_and_ignores_a_forged_forwarded_for(
    two_web_replicas,
):
    first, second = two_web_replicas
    bad_login = {"username": "nobody", "password": "wrong"}
    statuses = [
        _call(
            (first, second)[i % 2],
            "/auth/token",
            body=bad_login,
            headers={"X-Forwarded-For": f"10.0.0.{i}"},
        )[0]
        for i in range(6)
    ]
    # Guessing passwords from one address: 4 tries a minute, whatever X-Forwarded-For says.
    assert statuses == [400] * 4 + [429, 429]


@pytest.mark.django_db
def test_a_window_admits_exactly_the_limit_and_says_when_the_next_slot_frees(
    redis_flushed,
):
    key = "test:window"
    redis_flushed.delete(f"agentbus:throttle:{key}")
    assert [rate_take(key, limit=3, period=2.0) for _ in range(3)] == [None, None, None]
    wait = rate_take(key, limit=3, period=2.0)
    assert wait is not None and 0 < wait <= 2.0


@pytest.mark.django_db
def test_a_user_at_the_active_jobs_quota_gets_a_429_until_a_job_finishes(settings, redis_flushed):
    settings.AGENTBUS_MAX_ACTIVE_JOBS_PER_USER = 2
    erin = client_for(make_user("erin"))
    body = {"plan": {"tasks": [{"key": "a", "agent": "echo"}]}}
    first = erin.post("/jobs", body, format="json")
    assert first.status_code == 201
    assert erin.post("/jobs", body, format="json").status_code == 201

    refused = erin.post("/jobs", body, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_active_jobs"
    assert "2" in refused.json()["detail"]

    # The quota is per user, and a finished (here: cancelled) job frees a place.
    other = client_for(make_user("frank"))
    assert other.post("/jobs", body, format="json").status_code == 201
    assert erin.post(f"/jobs/{first.json()['id']}/cancel").status_code == 200
    assert erin.post("/jobs", body, format="json").status_code == 201
