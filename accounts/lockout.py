"""Password guessing is throttled on every login path, by django-axes.

``/accounts/login/``, ``/admin/login/`` and ``POST /auth/token`` all log in through
``django.contrib.auth.authenticate``, so one well-kept library watches them all: after
``AGENTBUS_LOGIN_FAILURE_LIMIT`` failures for one username, or from one client address,
further attempts for it are refused for ``AGENTBUS_LOGIN_COOLOFF`` seconds (each failure
during a lock-out starts the cool-off again), counted in PostgreSQL so every web replica
sees the same count. A correct password does not get through a lock-out.

The refusal is a 429 with ``Retry-After``: JSON in the API's error shape on the API, a
short page elsewhere. The client address follows ``AGENTBUS_NUM_PROXIES`` like the API's
rate limits, so a client cannot choose its own with ``X-Forwarded-For``.
"""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpResponse, JsonResponse

API_PATHS = ("/auth/",)


def client_ip(request) -> str:
    """REMOTE_ADDR, or the address the trusted proxies appended (DRF's rule)."""
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        return hops[-min(proxies, len(hops))]
    return request.META.get("REMOTE_ADDR", "")


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    cool_off = get_cool_off(request)
    retry_after = str(max(1, math.ceil(cool_off.total_seconds()))) if cool_off else None
    detail = "Too many failed logins for this account or from this address; try again later."
    if request.path.startswith(API_PATHS):
        response: HttpResponse = JsonResponse({"error": "locked_out", "detail": detail}, status=429)
    else:
        response = HttpResponse(f"<!doctype html><title>Locked out</title><p>{detail}</p>", status=429)
    if retry_after:
        response["Retry-After"] = retry_after
    return response


class LockoutBackend(AxesStandaloneBackend):
    """Axes' lock-out check for logins that come with a request (every web login path
    passes one); code that authenticates without a request (Django's test client's
    ``login()``, a management command) is not guessing passwords over the network."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
