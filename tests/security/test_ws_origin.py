"""A session-authenticated websocket must come from this server's own origin (scheme,
host and port) or a CSRF_TRUSTED_ORIGINS entry, as Django's CSRF check decides for a form."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from accounts.ws_auth import origin_allowed
from tests.conftest import make_user
from tests.security.conftest import SECURITY_WEB_PORT, session_cookie, ws_close_code, ws_open

pytestmark = pytest.mark.django_db(transaction=True)


def opens(base: str, cookie: str, origin: str) -> bool:
    try:
        with ws_open(base, "/ws/reviews", headers={"Cookie": cookie, "Origin": origin}) as ws:
            return ws_close_code(ws, timeout=0.5) is None
    except InvalidStatus:
        return False


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (f"http://127.0.0.1:{SECURITY_WEB_PORT}", True),
        ("http://127.0.0.1:9999", False),  # same host, another port
        (f"https://127.0.0.1:{SECURITY_WEB_PORT}", False),  # same host and port, another scheme
        ("http://127.0.0.1", False),  # no port means :80
        ("http://evil.example", False),
        ("null", False),
    ],
)
def test_a_session_socket_opens_only_from_this_servers_own_origin(security_web, origin, allowed):
    cookie = session_cookie(make_user("bea"))
    assert opens(security_web.base, cookie, origin) is allowed


def scope(origin: str, host: str = "agentbus.example.com", scheme: str = "wss") -> dict:
    return {"scheme": scheme, "headers": [(b"origin", origin.encode()), (b"host", host.encode())]}


def test_trusted_origins_follow_csrf_trusted_origins_semantics(settings):
    settings.ALLOWED_HOSTS = ["agentbus.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.corp.example.com:8443"]
    assert origin_allowed(scope("https://agentbus.example.com"))
    assert not origin_allowed(scope("http://agentbus.example.com"))  # wss socket, http page
    assert origin_allowed(scope("https://app.example.com"))
    assert not origin_allowed(scope("https://app.example.com:444"))
    assert origin_allowed(scope("https://team.corp.example.com:8443"))
    assert not origin_allowed(scope("https://team.corp.example.com"))  # the port is part of it
    assert not origin_allowed(scope("http://team.corp.example.com:8443"))  # and the scheme
    # Behind a TLS proxy the socket is plain ws, and X-Forwarded-Proto says https.
    proxied = scope("https://agentbus.example.com", scheme="ws")
    proxied["headers"].append((b"x-forwarded-proto", b"https"))
    assert origin_allowed(proxied)
