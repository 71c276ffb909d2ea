"""OpenTelemetry traces across the fleet: REST request, dispatch, worker, agent call.

One job is one trace. The web's request span (``TracingMiddleware``) is the root; on
submit its context is kept in Redis beside the job (``job_trace_save``), because the
orchestrator acts on the job later, in another process, and only from a hint. Each
queue message then carries the context of its own dispatch span, inside the signed
arguments (core.queue), so the worker's ``task.run`` span and the agent's HTTP or
LLM call (with the GenAI attributes for model and tokens) join the same trace.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard variable; the exporter
reads the other OTEL_* ones itself). Off costs nothing: the middleware removes itself
(MiddlewareNotUsed), every helper returns before touching OpenTelemetry, and messages
carry no context.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
JOB_TRACE_KEY = "agentbus:trace:job:{}"
JOB_TRACE_TTL = 7 * 24 * 3600  # a job's later steps join its trace for a week

_tracer = None


def tracing_enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _service_name() -> str:
    if os.environ.get("OTEL_SERVICE_NAME"):
        return os.environ["OTEL_SERVICE_NAME"]
    argv = " ".join(sys.argv)
    if "orchestrate" in argv:
        return "agentbus-orchestrator"
    if "rqworker" in argv:
        return "agentbus-worker"
    return "agentbus-web"


def tracer():
    """This process's tracer, set up on first use (OTLP over HTTP, batched)."""
    global _tracer
    if _tracer is None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT and appends /v1/traces.
        provider = TracerProvider(resource=Resource.create({"service.name": _service_name()}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _tracer = trace.get_tracer("agentbus")
    return _tracer


def _traceparent_of(span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _context_from(traceparent: str):
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent or not TRACEPARENT.match(traceparent):
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


# --- web ---------------------------------------------------------------------------------
class TracingMiddleware:
    """A SERVER span per request, continuing a caller's W3C ``traceparent``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction
        from django.core.exceptions import MiddlewareNotUsed

        if not tracing_enabled():
            raise MiddlewareNotUsed  # Django drops it: no cost per request
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        with self._span(request) as finish:
            return finish(self.get_response(request))

    async def _acall(self, request):
        with self._span(request) as finish:
            return finish(await self.get_response(request))

    @contextlib.contextmanager
    def _span(self, request) -> Iterator[Callable]:
        from opentelemetry import trace

        parent = _context_from(request.headers.get("traceparent", ""))
        with tracer().start_as_current_span(
            f"{request.method} {request.path}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "url.path": request.path},
        ) as span:

            def finish(response):
                match = getattr(request, "resolver_match", None)
                if match is not None and match.route:
                    route = _route_template(match.route)
                    span.update_name(f"{request.method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 500:
                    span.set_status(trace.StatusCode.ERROR)
                return response

            yield finish


def _route_template(route: str) -> str:
    """``^jobs/(?P<job_id>[^/]+)/?$`` (a re_path) as ``/jobs/{job_id}``: a span name
    groups requests by route, never by id."""
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)
    route = route.lstrip("^").rstrip("$").replace("/?", "")
    return "/" + route.lstrip("/")


def job_trace_save(job_id) -> None:
    """Keep the current span's context for this job, once the transaction commits.

    Later dispatches (by workers, and retries by the orchestrator) read it.
    """
    if not tracing_enabled():
        return
    from django.db import transaction
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        return
    traceparent = _traceparent_of(span)

    def save() -> None:
        from core.redis import redis_client

        try:
            redis_client().set(JOB_TRACE_KEY.format(job_id), traceparent, ex=JOB_TRACE_TTL)
        except Exception as exc:  # tracing never fails a submission
            logger.warning("could not keep the trace context of job %s: %s", job_id, exc)

    transaction.on_commit(save)


# --- dispatch ------------------------------------------------------------------------------
def dispatch_traceparents(messages: list) -> dict[str, str]:
    """For each message's task, a PRODUCER span "dispatch" in its job's trace, ended at
    once; returns ``{task_id: traceparent}`` for the messages to carry. Off: ``{}``.

    Looks up the jobs' kept contexts (one MGET) only when tracing is on, so dispatch
    costs nothing more when it is off. A job with none yet (its submission is committing)
    takes the current span, the request's, as the parent.
    """
    if not tracing_enabled() or not messages:
        return {}
    from opentelemetry import trace

    from core.redis import redis_client

    job_of = {m.task_id: str(m.job_id) for m in messages if m.job_id}
    jobs = sorted(set(job_of.values()))
    try:
        kept = dict(zip(jobs, redis_client().mget([JOB_TRACE_KEY.format(j) for j in jobs]) if jobs else []))
    except Exception:
        kept = {}
    carried = {}
    for message in messages:
        job_id = job_of.get(message.task_id, "")
        raw = kept.get(job_id)
        parent = _context_from(raw.decode() if isinstance(raw, bytes) else (raw or ""))
        span = tracer().start_span(
            f"dispatch {message.queue}",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rq",
                "messaging.operation.type": "send",
                "messaging.destination.name": message.queue,
                "agentbus.job_id": job_id,
                "agentbus.task_id": message.task_id,
                "agentbus.attempt": message.attempt,
            },
        )
        carried[message.task_id] = _traceparent_of(span)
        span.end()
    return carried


# --- worker --------------------------------------------------------------------------------
@contextlib.contextmanager
def task_span(task_id: str, attempt: int, traceparent: str) -> Iterator[None]:
    """The worker's CONSUMER span around one attempt, a child of its dispatch span.

    ``traceparent`` comes from the signed message: it was verified with the rest of
    the arguments, and is parsed only if it has the W3C shape.
    """
    if not tracing_enabled():
        yield
        return
    from opentelemetry import trace

    with tracer().start_as_current_span(
        "task.run",
        context=_context_from(traceparent),
        kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.system": "rq", "agentbus.task_id": task_id, "agentbus.attempt": attempt},
    ):
        yield


@contextlib.contextmanager
def http_span(url: str, headers: dict) -> Iterator[Callable[[int], None]]:
    """A CLIENT span around an HTTP agent's call; adds ``traceparent`` to ``headers``
    so an agent that traces continues the trace. Yields a status recorder."""
    if not tracing_enabled():
        yield _ignore
        return
    from urllib.parse import urlsplit

    from opentelemetry import trace

    parts = urlsplit(url)
    with tracer().start_as_current_span(
        "POST",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": "POST",
            "url.full": url,
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        },
    ) as span:
        headers["traceparent"] = _traceparent_of(span)

        def record(status: int) -> None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_status(trace.StatusCode.ERROR)

        yield record


@contextlib.contextmanager
def llm_span(*, model: str, base_url: str, max_tokens: int | None) -> Iterator[Callable[..., None]]:
    """A CLIENT span around one chat completion, with OpenTelemetry's GenAI attributes.
    Yields a recorder for the response's model and token usage."""
    if not tracing_enabled():
        yield _ignore
        return
    from urllib.parse import urlsplit

    from opentelemetry import trace

    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",  # the API spoken (any OpenAI-compatible server)
        "gen_ai.system": "openai",  # the attribute's older name, still read by many backends
        "gen_ai.request.model": model,
        "server.address": urlsplit(base_url).hostname or "",
    }
    if max_tokens:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    with tracer().start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:

        def record(*, response_model: str, input_tokens: int, output_tokens: int) -> None:
            span.set_attribute("gen_ai.response.model", response_model)
            span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)

        yield record


def _ignore(*args, **kwargs) -> None:
    return None
