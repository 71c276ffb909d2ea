"""Every websocket re-checks its credentials and its access while open: a revoked or
expired token, a logout, a deactivation or a demotion closes it with 4401 (credentials)
or 4403 (access), against a real web process (AGENTBUS_WS_RECHECK_INTERVAL=1 there)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ApiToken
from tests.conftest import client_for, make_user, plan
from tests.security.conftest import session_cookie, token_header, ws_close_code, ws_open

pytestmark = pytest.mark.django_db(transaction=True)


def a_job(client) -> str:
    response = client.post("/jobs", {"plan": plan({"key": "a", "agent": "echo"})}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_revoking_the_token_closes_its_open_job_socket_with_4401(security_web):
    sam = client_for(make_user("sam"))
    job = a_job(sam)
    with ws_open(security_web.base, f"/ws/jobs/{job}", headers={"Authorization": token_header(sam)}) as ws:
        assert ws_close_code(ws, timeout=1.5) is None  # stays open while the token is good
        token = ApiToken.objects.get(user=sam.user)
        assert sam.delete(f"/auth/tokens/{token.id}").status_code == 204
        assert ws_close_code(ws, timeout=5) == 4401


def test_an_expiring_token_closes_its_socket_without_anyone_telling_it(security_web):
    tess = client_for(make_user("tess"))
    with ws_open(security_web.base, "/ws/jobs", headers={"Authorization": token_header(tess)}) as ws:
        # An UPDATE sends no signal: only the periodic check can notice.
        ApiToken.objects.filter(user=tess.user).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert ws_close_code(ws, timeout=5) == 4401


@pytest.mark.parametrize("path", ["/ws/jobs", "/ws/reviews"])
def test_deactivating_a_user_closes_their_session_sockets(security_web, path):
    uma = make_user("uma")
    with ws_open(security_web.base, path, headers={"Cookie": session_cookie(uma)}) as ws:
        assert ws_close_code(ws, timeout=1.5) is None
        uma.is_active = False
        uma.save()
        assert ws_close_code(ws, timeout=5) == 4401


def test_logging_out_closes_the_sessions_socket(security_web):
    from django.test import Client

    vic = make_user("vic")
    cookie = session_cookie(vic)
    with ws_open(security_web.base, "/ws/reviews", headers={"Cookie": cookie}) as ws:
        browser = Client()
        name, value = cookie.split("=", 1)
        browser.cookies[name] = value
        browser.post("/accounts/logout/")
        assert ws_close_code(ws, timeout=5) == 4401


def test_a_demoted_staff_member_loses_another_users_job_stream_with_4403(security_web):
    owner = client_for(make_user("wendy"))
    job = a_job(owner)
    staff_user = make_user("xavier", staff=True)
    staff = client_for(staff_user)
    with ws_open(security_web.base, f"/ws/jobs/{job}", headers={"Authorization": token_header(staff)}) as ws:
        assert ws_close_code(ws, timeout=1.5) is None  # staff may watch any job
        staff_user.is_staff = False
        staff_user.save()
        assert ws_close_code(ws, timeout=5) == 4403
