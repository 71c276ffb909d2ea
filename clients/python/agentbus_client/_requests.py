"""What each API call sends, written once for the sync and the async client.

Each builder returns a :class:`Call` (method, path, query, body, headers); the clients
only execute it. Keeping the shapes here means the two clients cannot drift apart.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlparse

DEFAULT_URL = "http://127.0.0.1:8000"
JOB_FINISHED = ("succeeded", "failed", "cancelled")
TASK_FINISHED = ("succeeded", "failed", "skipped", "cancelled")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def settings_from_env(url: str | None, token: str | None) -> tuple[str, str]:
    """The base URL and token: arguments first, then AGENTBUS_URL / AGENTBUS_TOKEN."""
    base = (url or os.environ.get("AGENTBUS_URL") or DEFAULT_URL).rstrip("/")
    if urlparse(base).scheme not in ("http", "https"):
        raise ValueError(f"the server URL must be http(s)://..., not {base!r}")
    return base, token if token is not None else os.environ.get("AGENTBUS_TOKEN", "")


def websocket_url(base_url: str, path: str) -> str:
    parsed = urlparse(base_url)
    scheme = "wss" if parsed.scheme == "https" else "ws"
    return f"{scheme}://{parsed.netloc}{parsed.path}{path}"


def _id(value: str) -> str:
    return quote(str(value), safe="")


def submit(
    *,
    plan: dict | None = None,
    requirements: str | None = None,
    review_plan: bool | None = None,
    priority: int | None = None,
    metadata: dict | None = None,
    remember: bool | None = None,
    budget: dict | None = None,
    idempotency_key: str | None = None,
) -> Call:
    body: dict[str, Any] = {}
    if plan is not None:
        body["plan"] = plan
    if requirements is not None:
        body["requirements"] = requirements
    for name, value in (
        ("review_plan", review_plan),
        ("priority", priority),
        ("metadata", metadata),
        ("remember", remember),
        ("budget", budget),
    ):
        if value is not None:
            body[name] = value
    # A retried submission (the connection broke after the server committed) must not
    # run the job twice: the same key answers with the job already created.
    return Call("POST", "/jobs", json=body, headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})


def jobs(*, status: str | None = None, page: int | None = None) -> Call:
    return Call("GET", "/jobs", params=_present(status=status, page=page))


def job(job_id: str) -> Call:
    return Call("GET", f"/jobs/{_id(job_id)}")


def results(job_id: str) -> Call:
    return Call("GET", f"/jobs/{_id(job_id)}/results")


def cancel(job_id: str) -> Call:
    return Call("POST", f"/jobs/{_id(job_id)}/cancel")


def events(job_id: str, *, after: int = 0, limit: int | None = None) -> Call:
    return Call("GET", f"/jobs/{_id(job_id)}/events", params=_present(after=after, limit=limit))


def reviews(*, status: str | None = None, kind: str | None = None, job: str | None = None) -> Call:
    return Call("GET", "/reviews", params=_present(status=status, kind=kind, job=job))


def review(review_id: str) -> Call:
    return Call("GET", f"/reviews/{_id(review_id)}")


def decide(
    review_id: str,
    decision: str,
    *,
    comment: str | None = None,
    output: Any = None,
    input: dict | None = None,
    plan: Any = None,
    answer: Any = None,
) -> Call:
    body: dict[str, Any] = {"decision": decision}
    for name, value in (("comment", comment), ("output", output), ("input", input), ("plan", plan), ("answer", answer)):
        if value is not None:
            body[name] = value
    return Call("POST", f"/reviews/{_id(review_id)}/decision", json=body)


def claim(review_id: str) -> Call:
    return Call("POST", f"/reviews/{_id(review_id)}/claim")


def release(review_id: str) -> Call:
    return Call("POST", f"/reviews/{_id(review_id)}/release")


def memory_store(
    text: str, *, namespace: str | None = None, metadata: dict | None = None, ttl: int | None = None
) -> Call:
    body: dict[str, Any] = {"text": text}
    for name, value in (("namespace", namespace), ("metadata", metadata), ("ttl", ttl)):
        if value is not None:
            body[name] = value
    return Call("POST", "/memory/store", json=body)


def memory_search(
    query: str,
    *,
    k: int | None = None,
    namespace: str | None = None,
    mode: str | None = None,
    min_score: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call:
    params = _present(q=query, k=k, namespace=namespace, mode=mode, min_score=min_score)
    for key, value in (metadata or {}).items():
        params[f"metadata.{key}"] = value
    return Call("GET", "/memory/search", params=params)


def agents() -> Call:
    return Call("GET", "/agents")


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
