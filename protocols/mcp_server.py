"""agentbus as an MCP server: streamable HTTP at ``/mcp`` (the official ``mcp`` SDK).

Tools submit, read, wait for and cancel jobs, list, show and decide reviews, and store
and search memory; resource templates serve a job and its results. Every tool runs as
the token's user through ``protocols.operations``, the same validation, services and
selectors as REST, so another user's objects are "not found" here exactly as there. A
refusal is a tool error whose text is the API's JSON error.

``wait_for_job`` (and ``submit_job`` with ``wait``) follows the job's event log and
sends MCP progress notifications as its tasks run: ``progress`` counts finished tasks
plus the running ones' own progress, of ``total`` tasks.

Stateless HTTP: no session lives in one web process, so any replica behind a load
balancer answers any request, as for REST.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.transport_security import TransportSecuritySettings

from jobs.models import JOB_TERMINAL, TASK_TERMINAL
from protocols import operations
from protocols.auth import django_user_of
from protocols.follow import job_events_follow

MAX_WAIT_SECONDS = 3600

server = MCPServer(
    "agentbus",
    title="agentbus",
    instructions=(
        "agentbus runs AI-agent jobs: a plan of tasks (a DAG over registered agents) or free-text "
        "requirements. submit_job starts one (wait=true follows it to its results with progress); "
        "review gates wait for a human: list_reviews and decide_review."
    ),
    version="1",
)


def _user(ctx: Context):
    return django_user_of(ctx.request_context.request.scope)


async def _as_user(ctx: Context, operation, *args, **kwargs):
    """Run a synchronous operation as the caller, off the event loop; a refusal becomes
    a tool error carrying the API's JSON error."""
    user = _user(ctx)
    call = database_sync_to_async(operation, thread_sensitive=False)
    try:
        return await call(user, *args, **kwargs)
    except operations.OperationError as exc:
        raise ToolRefusal(exc) from None


class ToolRefusal(ToolError):
    """Shown to the model as the tool's error text: the API's JSON error (the SDK
    withholds the text of any exception that is not a ToolError)."""

    def __init__(self, error: operations.OperationError) -> None:
        super().__init__(json.dumps({**error.body, "status": error.status}))
        self.error = error


class _Progress:
    """MCP progress from a job's events: strictly increasing, as the spec requires."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tasks: dict[str, str] = {}
        self.fractions: dict[str, float] = {}
        self.total: int | None = None
        self.sent = -1.0

    async def apply(self, event: dict) -> None:
        if event["type"] == "job.status" and isinstance(event.get("tasks"), int) and event["tasks"]:
            self.total = max(self.total or 0, event["tasks"])
        key = event.get("key")
        if event["type"] == "task.status" and key:
            self.tasks[key] = event.get("status", "")
        if event["type"] == "task.progress" and key and isinstance(event.get("progress"), (int, float)):
            self.fractions[key] = float(event["progress"])
        done = sum(1 for status in self.tasks.values() if status in TASK_TERMINAL)
        running = [self.fractions.get(k, 0.0) for k, s in self.tasks.items() if s not in TASK_TERMINAL]
        value = done + (sum(running) / len(running) if running else 0.0) * 0.99
        total = max(self.total or 0, len(self.tasks)) or None
        if value <= self.sent:
            return
        self.sent = value
        what = f"{key}: {event.get('status') or event.get('message') or event['type']}" if key else event.get("status")
        await self.ctx.report_progress(value, total, f"{done}/{total or '?'} tasks done; {what}")


async def _wait(ctx: Context, job_id: str, timeout: float) -> dict:
    import asyncio

    job = await _as_user(ctx, operations.job_show, job_id)
    progress = _Progress(ctx)
    if job["status"] not in JOB_TERMINAL:

        async def follow() -> None:
            async with aclosing(job_events_follow(job["id"])) as events:
                async for event in events:
                    await progress.apply(event)
                    if event["type"] == "job.status" and event.get("status") in JOB_TERMINAL:
                        return

        try:
            await asyncio.wait_for(follow(), min(timeout, MAX_WAIT_SECONDS))
        except TimeoutError:
            job = await _as_user(ctx, operations.job_show, job_id)
            return {"finished": False, "job": job}
    return {"finished": True, **(await _as_user(ctx, operations.job_results, job_id))}


@server.tool()
async def submit_job(
    ctx: Context,
    plan: dict[str, Any] | None = None,
    requirements: str = "",
    review_plan: bool = False,
    priority: int = 0,
    metadata: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    wait: bool = False,
    timeout: float = 300,
) -> dict[str, Any]:
    """Submit a job: an explicit plan {"tasks": [{"key", "agent", "input"?, "depends_on"?, "review"?}]},
    free-text requirements for the planner, or both. With wait=true, follow it (progress notifications)
    and answer its results once finished, or its state after `timeout` seconds."""
    spec: dict[str, Any] = {"requirements": requirements, "review_plan": review_plan, "priority": priority}
    for name, value in (("plan", plan), ("metadata", metadata), ("budget", budget)):
        if value is not None:
            spec[name] = value
    job, _ = await _as_user(ctx, operations.job_submit_as, spec=spec, idempotency_key=idempotency_key)
    if wait:
        return await _wait(ctx, str(job.id), timeout)
    return await _as_user(ctx, operations.job_show, str(job.id))


@server.tool()
async def get_job(ctx: Context, job_id: str) -> dict[str, Any]:
    """A job with its tasks: statuses, attempts, progress, errors, timings."""
    return await _as_user(ctx, operations.job_show, job_id)


@server.tool()
async def get_job_results(ctx: Context, job_id: str) -> dict[str, Any]:
    """A finished job's result and each task's output (an error while it is not finished)."""
    return await _as_user(ctx, operations.job_results, job_id)


@server.tool()
async def wait_for_job(ctx: Context, job_id: str, timeout: float = 300) -> dict[str, Any]:
    """Follow a job until it finishes, with progress notifications; answers its results
    ({"finished": true, ...}) or, after `timeout` seconds, its state ({"finished": false, "job"})."""
    return await _wait(ctx, job_id, timeout)


@server.tool()
async def cancel_job(ctx: Context, job_id: str) -> dict[str, Any]:
    """Cancel a job; running tasks are stopped."""
    return await _as_user(ctx, operations.job_cancel_as, job_id)


@server.tool()
async def list_reviews(ctx: Context, status: str = "pending", job_id: str | None = None) -> dict[str, Any]:
    """Review gates you may decide (newest first); status pending (default), decided or closed; "" for all."""
    return {"reviews": await _as_user(ctx, operations.reviews_listed, status=status, job_id=job_id)}


@server.tool()
async def get_review(ctx: Context, review_id: str) -> dict[str, Any]:
    """A review with what it needs decided (proposed value, the task's input, upstream outputs) and its history."""
    return await _as_user(ctx, operations.review_show, review_id)


@server.tool()
async def decide_review(
    ctx: Context,
    review_id: str,
    decision: str,
    comment: str = "",
    output: Any = None,
    input: dict[str, Any] | None = None,
    plan: Any = None,
    answer: Any = None,
) -> dict[str, Any]:
    """Decide a review: approve; edit (input for a before-gate, output for an after-gate, plan for a plan
    review); reject (comment is the feedback); respond (answer to an agent's question)."""
    body: dict[str, Any] = {"decision": decision, "comment": comment}
    for name, value in (("output", output), ("input", input), ("plan", plan), ("answer", answer)):
        if value is not None:
            body[name] = value
    return await _as_user(ctx, operations.review_decide_as, review_id, body)


@server.tool()
async def search_memory(
    ctx: Context,
    query: str,
    k: int = 10,
    namespace: str | None = None,
    mode: str = "hybrid",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Search your long-term memory, best first (hybrid: vector and keyword); metadata filters by equality."""
    params: dict[str, Any] = {"q": query, "k": k, "mode": mode}
    if namespace:
        params["namespace"] = namespace
    return await _as_user(ctx, operations.memory_search_as, params, metadata)


@server.tool()
async def store_memory(
    ctx: Context,
    text: str,
    namespace: str | None = None,
    metadata: dict[str, Any] | None = None,
    ttl: int | None = None,
) -> dict[str, Any]:
    """Remember a text (optionally in a namespace, with metadata and a time to live in seconds)."""
    body: dict[str, Any] = {"text": text, "metadata": metadata or {}, "ttl": ttl}
    if namespace:
        body["namespace"] = namespace
    return await _as_user(ctx, operations.memory_store_as, body)


async def _resource(ctx: Context, operation, job_id: str) -> str:
    try:
        return json.dumps(await _as_user(ctx, operation, job_id))
    except ToolRefusal as refusal:
        if refusal.error.status == 404:
            raise ResourceNotFoundError(str(refusal)) from None
        raise ResourceError(str(refusal)) from None


@server.resource("agentbus://jobs/{job_id}", mime_type="application/json", name="job")
async def job_resource(job_id: str, ctx: Context) -> str:
    """A job with its tasks."""
    return await _resource(ctx, operations.job_show, job_id)


@server.resource("agentbus://jobs/{job_id}/results", mime_type="application/json", name="job_results")
async def job_results_resource(job_id: str, ctx: Context) -> str:
    """A finished job's result and each task's output."""
    return await _resource(ctx, operations.job_results, job_id)


def transport_security() -> TransportSecuritySettings:
    """The SDK's DNS-rebinding guard, allowing the hosts Django allows."""
    hosts = list(settings.ALLOWED_HOSTS)
    # Django's wildcards ("*", ".example.com") have no equal in the SDK's list; the
    # token, not the Host header, is what guards these endpoints.
    if any(host == "*" or host.startswith(".") for host in hosts):
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if not hosts:
        hosts = ["127.0.0.1", "localhost", "[::1]"]
    allowed = [pattern for host in hosts for pattern in (host, f"{host}:*")]
    origins = [f"{scheme}://{pattern}" for scheme in ("http", "https") for pattern in allowed]
    return TransportSecuritySettings(
        allowed_hosts=allowed, allowed_origins=[*origins, *getattr(settings, "CSRF_TRUSTED_ORIGINS", [])]
    )


def mcp_asgi_app():
    """The SDK's Starlette app serving ``/mcp``; its session manager is started by
    ``protocols.asgi`` (a mounted app's own lifespan never runs)."""
    return server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, transport_security=transport_security()
    )
