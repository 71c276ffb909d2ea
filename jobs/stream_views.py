"""``GET /jobs/{id}/stream``: the job's stream (core.streams) as Server-Sent Events, for
clients that cannot hold a websocket (LangGraph's clients, curl, EventSource).

A DRF view, so the token and session authentication, the throttles, the 404 for
another user's job and the JSON errors are the REST API's own; it answers a
``StreamingHttpResponse`` over an async generator, which Django's ASGI handler (under
uvicorn or daphne) runs on the event loop without holding a thread, and cancels when
the client goes away.

Each entry is one event: ``id: <entry id>``, ``event: <type>`` (``task.attempt``,
``task.delta``, ``task.emit``, ``task.end``, ``task.abandoned``), ``data: <JSON>``.
A client resumes with ``Last-Event-ID`` (EventSource sends it by itself on reconnect;
``?last_event_id=`` does the same for a first connection) and gets exactly the entries
after it. Without one it gets everything still kept. ``stream.truncated`` (no id) says
that entries after the client's position were trimmed away; ``stream.done`` (no id,
``data: {"status"}``) that the job finished and nothing more will come, and the
response ends. While open, the credentials and the access are checked again every
``AGENTBUS_WS_RECHECK_INTERVAL`` seconds, as on websockets; the stream ends when they
are gone.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db import close_old_connections
from django.http import Http404, StreamingHttpResponse
from django.utils.module_loading import import_string
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from accounts.authentication import user_for_raw_token
from accounts.ws_guard import long_connection_close, long_connection_open
from core.errors import ApplicationError, QuotaExceeded
from core.openapi import BAD_REQUEST, NOT_FOUND, UNAUTHENTICATED, error
from core.streams import CLOSING, DONE, StreamReader, entry_id_valid
from jobs.models import JOB_TERMINAL, Job
from jobs.purged import job_purged_response
from jobs.selectors import job_get

logger = logging.getLogger(__name__)

EXAMPLE_MESSAGE = {
    "type": "task.delta",
    "id": "1764662400131-0",
    "job": "6f1c2b1e-8a4d-4e55-9d1a-3b2f1c0d9e8f",
    "task": "0b7e6c1a-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
    "key": "write",
    "attempt": 1,
    "offset": 0,
    "text": "The tide",
}

# Once the job has finished, wait this long (ms) for the last markers before ending.
FINISHING_BLOCK_MS = 300


class JobStreamView(APIView):
    def perform_content_negotiation(self, request, force=False):
        # EventSource asks for Accept: text/event-stream, which DRF's negotiation would
        # refuse (406): the stream is not rendered by DRF, and errors are JSON whatever
        # was asked for.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        operation_id="jobs_stream",
        summary="What the job's agents say, live, as Server-Sent Events",
        description=(
            "`text/event-stream`: one event per chunk, `id:` the resume token, `event:` its type "
            "(`task.attempt`, `task.delta`, `task.emit`, `task.end`, `task.abandoned`, then "
            "`stream.done` when the job has finished). Send `Last-Event-ID` to resume after an event."
        ),
        parameters=[
            OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("last_event_id", str, OpenApiParameter.QUERY, required=False),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=inline_serializer(
                    name="StreamMessage",
                    fields={
                        "type": serializers.CharField(help_text="The event's name: task.delta, task.end, ..."),
                        "id": serializers.CharField(help_text="The resume token (also the SSE id)."),
                        "job": serializers.UUIDField(),
                        "task": serializers.UUIDField(),
                        "key": serializers.CharField(),
                        "attempt": serializers.IntegerField(),
                        "offset": serializers.IntegerField(help_text="Characters of this attempt's text before it."),
                        "text": serializers.CharField(required=False),
                        "status": serializers.CharField(required=False),
                    },
                ),
                description="One `data:` object per event.",
                examples=[
                    OpenApiExample(
                        "A piece of text",
                        value=EXAMPLE_MESSAGE,
                    )
                ],
            ),
            400: BAD_REQUEST,
            401: UNAUTHENTICATED,
            404: NOT_FOUND,
            429: error("Too many live connections (websockets and streams) open: `too_many_connections`."),
        },
    )
    def get(self, request, job_id):
        header = request.headers.get("Last-Event-ID")
        after = header if header is not None else request.query_params.get("last_event_id", "0")
        after = after.strip() or "0"
        if not entry_id_valid(after):
            name = "Last-Event-ID" if header is not None else "last_event_id"
            raise ApplicationError(
                f"{name}: {after[:60]!r} is not an event id of this stream (they look like '1733140000000-0').",
                code="invalid_last_event_id",
                fields={name: ["not an event id of this stream"]},
            )
        job = job_get(user=request.user, job_id=job_id)
        if gone := job_purged_response(job):
            return gone
        credentials = _Credentials.of(request)
        # Counted with the user's websockets: a stream holds a coroutine and a reader.
        connection = f"sse:{uuid.uuid4().hex}"
        if not long_connection_open(request.user.pk, connection):
            raise QuotaExceeded(
                f"You have {settings.AGENTBUS_WS_MAX_PER_USER} live connections (websockets and streams) open "
                "already; close one first.",
                code="too_many_connections",
            )
        # The request's database connection would otherwise stay out of the pool until
        # the stream ends (Django hands it back when the response closes): ten open
        # streams took every connection of the pool and the next request waited 30 s.
        close_old_connections()
        response = StreamingHttpResponse(
            _sse(job.id, after=after, credentials=credentials, connection=connection),
            content_type="text/event-stream; charset=utf-8",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response


class _Credentials(SimpleNamespace):
    """What the request authenticated with, to check again while the stream is open."""

    @classmethod
    def of(cls, request):
        if isinstance(request.auth, str):  # HashedTokenAuthentication: the raw key
            return cls(token=request.auth, session_key=None, user_id=request.user.pk)
        return cls(token=None, session_key=request.session.session_key, user_id=request.user.pk)

    def user_now(self):
        if self.token is not None:
            user = user_for_raw_token(self.token)
        elif self.session_key:
            store = import_string(settings.SESSION_ENGINE + ".SessionStore")(session_key=self.session_key)
            user = get_user(SimpleNamespace(session=store))
        else:
            return None
        return user if user is not None and user.is_authenticated and user.pk == self.user_id else None


# database_sync_to_async: hands the thread's connection back after each call, as the
# websocket consumers do, so a long stream holds none between its checks.
@database_sync_to_async
def _job_status(job_id) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


@database_sync_to_async
def _still_allowed(credentials: _Credentials, job_id) -> bool:
    user = credentials.user_now()
    if user is None:
        return False
    try:
        job_get(user=user, job_id=job_id)
    except Http404:
        return False
    return True


def _event(message: dict) -> bytes:
    head = f"id: {message['id']}\n" if "id" in message else ""
    return f"{head}event: {message['type']}\ndata: {json.dumps(message, separators=(',', ':'))}\n\n".encode()


async def _sse(job_id, *, after: str, credentials: _Credentials, connection: str):
    """1. Say how soon to reconnect. 2. Follow the stream from ``after``, one event per
    entry. 3. When the job has finished (looked at when an attempt closes, and when the
    stream is idle), wait briefly for the last markers, say ``stream.done`` and end.
    4. Every recheck interval, end the stream if the credentials or the access are gone."""
    yield b"retry: 1000\n\n"
    finishing = await _job_status(job_id) in JOB_TERMINAL
    idle_ms = int(settings.AGENTBUS_STREAM_IDLE_SECONDS * 1000)
    recheck_at = time.monotonic() + settings.AGENTBUS_WS_RECHECK_INTERVAL
    reader = StreamReader(job_id, after=after)
    try:
        while True:
            try:
                batch = await reader.next_batch(block_ms=FINISHING_BLOCK_MS if finishing else idle_ms)
            except RedisError:
                # End here; EventSource comes back after `retry` with Last-Event-ID and resumes.
                logger.warning("reading the stream of job %s failed; the SSE response ends", job_id, exc_info=True)
                return
            for message in batch:
                yield _event(message)
            if time.monotonic() >= recheck_at:
                if not await _still_allowed(credentials, job_id):
                    return
                await sync_to_async(long_connection_open)(credentials.user_id, connection)  # still alive
                recheck_at = time.monotonic() + settings.AGENTBUS_WS_RECHECK_INTERVAL
            if not batch:
                if finishing:
                    yield _event({"type": DONE, "job": str(job_id), "status": await _job_status(job_id)})
                    return
                yield b": keep-alive\n\n"
            if not finishing and (not batch or any(m["type"] in CLOSING for m in batch)):
                finishing = await _job_status(job_id) in JOB_TERMINAL
    finally:
        reader.close()  # leaves the process's hub of the job
        await sync_to_async(long_connection_close)(credentials.user_id, connection)
