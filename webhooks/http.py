"""The one HTTP client of webhooks: signed POSTs to a user's URL, checked against SSRF.

A user chooses the URL, so it must never reach what only the server can reach:
1. The URL is http(s), with a host and no credentials.
2. The host is resolved here, and every address it resolves to must be public (not
   loopback, private, link-local, multicast, reserved or unspecified; IPv4 inside IPv6
   is checked as IPv4), unless AGENTBUS_WEBHOOK_ALLOW_PRIVATE is on.
3. The connection goes to the address that was checked (the URL's host is replaced by
   it, with the name kept in the Host header and for TLS: SNI and certificate checks),
   so a second DNS answer cannot point the request elsewhere (DNS rebinding).
4. Redirects are not followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

SIGNATURE_HEADER = "X-Agentbus-Signature"
TIMESTAMP_HEADER = "X-Agentbus-Timestamp"
DELIVERY_HEADER = "X-Agentbus-Delivery"
EVENT_HEADER = "X-Agentbus-Event"


class UnsafeURL(Exception):
    """A webhook URL that may not be called; the message says why."""


def signature(secret: str, timestamp: str, delivery_id: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256(secret, "<timestamp>.<delivery id>.<body>") in hex."""
    message = timestamp.encode() + b"." + delivery_id.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def address_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook may not connect to ``ip``, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for name in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{name}"):
            return f"{ip} is a {name.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


@dataclass(frozen=True)
class Target:
    url: str  # with the checked IP in place of the host name
    host: str  # the name, for Host and TLS
    ip: str


def url_check(url: str, *, resolve: bool = True) -> Target | None:
    """Check a webhook URL (steps 1-2 of the module docstring); returns where to connect.
    Raises UnsafeURL. ``resolve=False`` checks the form only."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("has a port out of range") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("must be an http or https URL with a host")
    if parts.username or parts.password:
        raise UnsafeURL("must not carry a user name or password")
    if not resolve:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"the host {parts.hostname!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not settings.AGENTBUS_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            reason = address_refused(ipaddress.ip_address(address.split("%")[0]))
            if reason:
                raise UnsafeURL(f"the host {parts.hostname!r} resolves to {reason}")
    ip = addresses[0]
    netloc = f"[{ip}]" if ":" in ip else ip
    if parts.port:
        netloc += f":{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return Target(url=pinned, host=parts.hostname, ip=ip)


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str


def signed_post(*, url: str, secret: str, delivery_id: str, event: str, body: bytes, timestamp: str) -> Attempt:
    """POST ``body`` to ``url``, signed; any 2xx is a success."""
    try:
        target = url_check(url)
    except UnsafeURL as exc:
        return Attempt(False, None, f"refused: {exc}")
    parts = urlsplit(url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "agentbus-webhooks/1",
        "Host": parts.netloc.rsplit("@", 1)[-1],
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
    }
    if secret:  # a job's notify may come without a secret: then there is nothing to sign with
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, delivery_id, body)
    try:
        with httpx.Client(timeout=settings.AGENTBUS_WEBHOOK_TIMEOUT, follow_redirects=False, trust_env=False) as client:
            response = client.post(target.url, content=body, headers=headers, extensions={"sni_hostname": target.host})
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:2000])
    if 200 <= response.status_code < 300:
        return Attempt(True, response.status_code, "")
    if 300 <= response.status_code < 400:
        return Attempt(False, response.status_code, f"HTTP {response.status_code}: redirects are not followed")
    return Attempt(False, response.status_code, f"HTTP {response.status_code}: {response.text[:500]}")
