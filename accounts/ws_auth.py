"""Who is on the other end of a websocket: a program with a token, or a browser session.

Channels' AuthMiddlewareStack resolves the session cookie into ``scope["user"]``; the
middleware here runs inside it and, when the handshake carries
``Authorization: Token <key>`` (or ``Bearer``), replaces that user with the token's
owner, exactly as the REST API does. A header that is present but wrong leaves the
connection anonymous, so the consumer refuses it rather than falling back to a cookie.

A browser authenticated by its cookie could be steered by another site into opening a
socket (cross-site websocket hijacking), so a session-authenticated handshake must come
from an allowed Origin. Token handshakes are not exposed to that: a browser cannot be
made to send someone's token.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from accounts.authentication import KEYWORDS, user_for_raw_token
from accounts.models import token_digest


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def _token_from(scope) -> str | None:
    """The raw key of an ``Authorization`` header, "" if malformed, None if absent."""
    value = _header(scope, b"authorization")
    if value is None:
        return None
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() not in KEYWORDS:
        return ""
    try:
        return parts[1].decode()
    except UnicodeError:
        return ""


def _is_secure(scope) -> bool:
    if scope.get("scheme") == "wss":
        return True
    # Behind a TLS-terminating proxy, as SECURE_PROXY_SSL_HEADER says for HTTP.
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name = proxy_header[0].removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, name)
        return value is not None and value.decode("latin1").split(",")[0].strip() == proxy_header[1]
    return False


def origin_allowed(scope) -> bool:
    """No Origin (not a browser), or an Origin Django's CSRF check would accept.

    As ``CsrfViewMiddleware``: the Origin must be this server's own origin, scheme, host
    and port (``http(s)://`` + an allowed ``Host`` header), or one of
    ``CSRF_TRUSTED_ORIGINS`` (exact, or ``https://*.example.com`` for subdomains, same
    scheme and port). Comparing the host alone let a page on another port or scheme of
    the same host open a socket with the victim's cookie.
    """
    origin_raw = _header(scope, b"origin")
    if origin_raw is None:
        return True
    origin = origin_raw.decode("latin1")
    if origin == "null":
        return False
    host = (_header(scope, b"host") or b"").decode("latin1")
    allowed = (
        ["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG and not settings.ALLOWED_HOSTS else settings.ALLOWED_HOSTS
    )
    domain, _ = split_domain_port(host)
    own = f"{'https' if _is_secure(scope) else 'http'}://{host}"
    if domain and validate_host(domain, allowed) and origin == own:
        return True
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        is_same_domain(parsed.netloc, trusted.netloc.lstrip("*"))
        for trusted in map(urlsplit, settings.CSRF_TRUSTED_ORIGINS)
        if "*" in trusted.netloc and trusted.scheme == parsed.scheme
    )


class TokenAuthMiddleware:
    """Resolve ``Authorization: Token`` into ``scope["user"]``; guard sessions by Origin."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        raw = _token_from(scope)
        if raw is not None:
            user = await database_sync_to_async(user_for_raw_token)(raw) if raw else None
            # The digest, not the key, stays in the scope: ws_guard re-checks it while open.
            scope = dict(scope, user=user or AnonymousUser(), auth_method="token", auth_token_digest=token_digest(raw))
        elif not origin_allowed(scope):
            scope = dict(scope, user=AnonymousUser(), auth_method="refused-origin")
        else:
            scope = dict(scope, auth_method="session")
        return await self.app(scope, receive, send)
