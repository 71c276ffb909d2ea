"""Password guessing is throttled per account and per client on every login path
(django-axes): /auth/token on a real web process, /accounts/login/ and /admin/login/
through Django's own login views; a lock-out is a 429 with Retry-After, JSON on the API,
and even the right password does not get through it."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import make_user
from tests.security.conftest import http

pytestmark = pytest.mark.django_db(transaction=True)

LOCKOUT_WEB_PORT = 8244


@pytest.fixture(scope="module")
def lockout_web(processes):
    # One trusted proxy, so each test plays its own client address by X-Forwarded-For.
    env = {"AGENTBUS_LOGIN_FAILURE_LIMIT": "3", "AGENTBUS_LOGIN_COOLOFF": "60", "AGENTBUS_NUM_PROXIES": "1"}
    _, base = processes.start_web(LOCKOUT_WEB_PORT, name="lockout-web", env=env)
    return base


def token_attempt(base: str, username: str, password: str, client: str):
    return http(
        base, "POST", "/auth/token", body={"username": username, "password": password},
        headers={"X-Forwarded-For": client},
    )  # fmt: skip


def test_an_account_is_locked_after_three_wrong_passwords_from_any_clients(lockout_web):
    make_user("yara")
    statuses = [token_attempt(lockout_web, "yara", "wrong", f"10.1.0.{i}")[0] for i in range(3)]
    assert statuses == [400, 400, 429]  # the third failure is the one that locks

    status, headers, body = token_attempt(lockout_web, "yara", "pw-yara", "10.1.0.99")  # the right one
    assert status == 429
    assert body["error"] == "locked_out"
    assert 1 <= int(headers["Retry-After"]) <= 60


def test_a_client_guessing_many_accounts_is_locked_out_of_all_of_them(lockout_web):
    make_user("zoe")
    statuses = [token_attempt(lockout_web, name, "guess", "10.2.0.1")[0] for name in ("nobody1", "nobody2", "nobody3")]
    assert statuses == [400, 400, 429]
    status, headers, _ = token_attempt(lockout_web, "zoe", "pw-zoe", "10.2.0.1")
    assert status == 429 and "Retry-After" in headers
    assert token_attempt(lockout_web, "zoe", "pw-zoe", "10.2.0.2")[0] == 200  # another client is not


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_the_login_pages_lock_out_too(settings, path):
    settings.AXES_FAILURE_LIMIT = 3
    make_user("abby", staff=True)
    browser = Client(REMOTE_ADDR="10.3.0.1")
    statuses = [browser.post(path, {"username": "abby", "password": "wrong"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # the form again, twice
    locked = browser.post(path, {"username": "abby", "password": "pw-abby"})
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) >= 1
    assert "_auth_user_id" not in browser.session
