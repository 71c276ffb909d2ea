"""Liveness and readiness probes for load balancers and orchestrators (Kubernetes etc.)."""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse

from accounts.authentication import user_for_raw_token
from core.redis import redis_client
from memory.chroma import chroma_heartbeat


def healthz(request) -> JsonResponse:
    """The process is up and serving; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _check(probe) -> dict:
    started = time.perf_counter()
    try:
        ok = bool(probe())
        error = "" if ok else "not responding"
    except Exception as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
    result = {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1)}
    if error:
        result["error"] = error
    return result


def _database() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def readyz(request) -> JsonResponse:
    """Each dependency's state; 503 when any is down, so traffic goes elsewhere."""
    checks = {
        "database": _check(_database),
        "redis": _check(lambda: redis_client().ping()),
        "chroma": _check(chroma_heartbeat),
    }
    ready = all(c["ok"] for c in checks.values())
    body: dict = {"status": "ok" if ready else "unavailable"}
    # Which dependency failed, and its error text, are for operators only.
    if _is_staff(request):
        body["checks"] = checks
    return JsonResponse(body, status=200 if ready else 503)


def _is_staff(request) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.is_staff
    parts = request.headers.get("Authorization", "").split()
    if len(parts) == 2 and parts[0].lower() in ("token", "bearer"):
        user = user_for_raw_token(parts[1])
        return bool(user and user.is_staff)
    return False
