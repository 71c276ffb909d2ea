"""Liveness and readiness probes for load balancers and orchestrators (Kubernetes etc.)."""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse

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
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
