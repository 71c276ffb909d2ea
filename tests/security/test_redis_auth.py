"""Redis may sit on a network others reach, so it is locked down and every process
reaches it through REDIS_URL alone: an ACL user with a password (the default user
switched off) and TLS (`rediss://`, the server's certificate checked against a CA).
Each test runs its own redis-server, so the shared one is never reconfigured."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis as redis_lib
from django.conf import settings as django_settings

from core.redis import redis_reset
from tests.conftest import client_for, make_user
from tests.faults.conftest import (
    Lab,
    assert_settled_exactly_once,
    sleep_plan,
    submit,
    wait_jobs,
)
from tests.faults.servers import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

ACL_PORT, TLS_PORT = 8151, 8152


def _run_one_job_through(lab: Lab, client) -> None:
    lab.orchestrator()
    lab.worker("secure-w1")
    job_id = submit(client, sleep_plan(("a", []), ("b", ["a"]), seconds=0.1))
    wait_jobs([job_id], timeout=60)
    assert_settled_exactly_once([job_id])


@pytest.fixture
def point_at(settings):
    """Point this process's one Redis client at ``url`` for the test."""

    def point(url: str) -> None:
        settings.REDIS_URL = url
        redis_reset()

    yield point
    redis_reset()


def test_every_process_works_through_an_acl_user_with_a_password(processes, point_at, alice, tmp_path):
    server = RedisServer(ACL_PORT, tmp_path).start()
    try:
        admin = redis_lib.Redis(port=ACL_PORT)
        admin.execute_command("ACL", "SETUSER", "agentbus", "on", ">s3cret-pw", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
        with pytest.raises(redis_lib.exceptions.AuthenticationError):
            redis_lib.Redis(port=ACL_PORT).ping()  # no credentials: refused

        url = server.url_for("agentbus", "s3cret-pw")
        point_at(url)
        lab = Lab(processes, server, url=url)
        try:
            _run_one_job_through(lab, alice)
        finally:
            lab.stop_all()

        # A wrong password shows up in readiness, not as a crash.
        point_at(server.url_for("agentbus", "wrong"))
        response = client_for(make_user("ops", staff=True)).get("/readyz")  # details are for staff
        assert response.status_code == 503
        assert response.json()["checks"]["redis"]["ok"] is False
    finally:
        server.stop()


def test_every_process_works_over_tls_with_a_verified_certificate(processes, point_at, alice, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = [
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
    ]
    server = RedisServer(TLS_PORT, tmp_path, *tls, "--tls-auth-clients", "no", tls_ca=cert).start()
    try:
        assert server.url.startswith("rediss://")
        # Plain text to the TLS port gets nowhere.
        with pytest.raises(redis_lib.exceptions.ConnectionError):
            redis_lib.Redis(port=TLS_PORT, socket_timeout=1).ping()
        point_at(server.url)
        lab = Lab(processes, server)
        try:
            _run_one_job_through(lab, alice)
        finally:
            lab.stop_all()
        assert django_settings.REDIS_URL.startswith("rediss://")
    finally:
        server.stop()
