"""Websocket consumers: a job's event stream and the caller's live job list.

Consumers only forward: events are published by ``jobs.events.events_publish`` after
commit, and read back from the event log (``jobs.selectors``) when a client catches
up. Messages are one JSON event per websocket frame, in the shape of
``JobEvent.as_message()``.

With ``?stream=1`` the job's socket also carries what its agents say while they say
it (core.streams): ``task.attempt``, ``task.delta``, ``task.emit``, ``task.end`` and
``task.abandoned`` messages, which have an ``id`` (the stream's resume token) instead of
a ``seq``; ``&stream_after=<id>`` resumes after one. They are read from the job's Redis
Stream by the consumer itself (a blocking XREAD), not passed over the channel layer, so
they arrive in order, each once, and never touch the event log. Without ``stream=1``
the socket is as it was: every message an event with a ``seq``.

Close codes before the handshake is accepted (the ASGI server answers HTTP 403, the
socket never opens): 4401 not authenticated, 4404 no such job for this user (another
user's job included, as the REST API's 404), 4400 a bad ``?after`` or ``?stream_after``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404
from redis.exceptions import RedisError

from accounts.ws_guard import CredentialRecheck
from core.live_signing import live_verified
from core.streams import CLOSING, StreamReader, entry_id_valid
from jobs.events import STAFF_JOBS_GROUP, job_group, user_jobs_group
from jobs.models import JOB_TERMINAL, Job
from jobs.selectors import job_events, job_get

logger = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404

# Events read from the log per query while catching up.
REPLAY_BATCH = 500


def _db(func):
    # Reads run on the thread pool, not Channels' single sync thread, so many sockets
    # catching up at once do not queue behind each other.
    return database_sync_to_async(func, thread_sensitive=False)


@_db
def _job_for(user, job_id) -> Job | None:
    try:
        return job_get(user=user, job_id=job_id)
    except (Http404, ValueError):
        return None


@_db
def _events_after(job: Job, after: int) -> list[dict]:
    return [e.as_message() for e in job_events(job=job, after=after, limit=REPLAY_BATCH)]


@_db
def _job_position(job_id) -> tuple[int, str] | None:
    return Job.objects.filter(pk=job_id).values_list("last_seq", "status").first()


def _query_int(scope, name: str, default: int) -> int | None:
    """A non-negative integer query parameter; None when present but not one."""
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        return None
    return value if value >= 0 else None


def _query_str(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name)
    return values[-1] if values else None


def _authenticated(scope) -> bool:
    user = scope.get("user")
    return bool(user is not None and user.is_authenticated)


class JobEventsConsumer(CredentialRecheck, AsyncWebsocketConsumer):
    """``/ws/jobs/{id}?after=N``: the job's events after N, then live, each exactly once.

    1. Join the job's group before reading the log, so an event committed after the
       read is sure to arrive live (one committed before it may arrive both ways).
    2. Send the log after N from the database, remembering the last ``seq`` sent.
    3. Live events at or below that ``seq`` are duplicates and dropped; one that skips
       ahead means the layer lost or reordered something, so the gap is read from the
       log first. The layer is at-most-once; the log is the truth.
    4. A periodic check compares the job's ``last_seq`` with what was sent, so even a
       lost final event (nothing after it to reveal the gap) reaches the client; it
       also joins the group again, which costs one Redis write and restores membership
       that Redis lost (a restart, or channels_redis' group expiry on a days-long socket).
    One lock orders the sends of the live handler and the periodic check.
    """

    async def connect(self) -> None:
        self.watchdog: asyncio.Task | None = None
        self.streamer: asyncio.Task | None = None
        self.group: str | None = None
        if not _authenticated(self.scope):
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        after = _query_int(self.scope, "after", 0)
        stream_after = _query_str(self.scope, "stream_after") or "0"
        if after is None or not entry_id_valid(stream_after):
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.stream_reader = StreamReader(None, after=stream_after) if _query_str(self.scope, "stream") == "1" else None
        job = await _job_for(self.scope["user"], self.scope["url_route"]["kwargs"]["job_id"])
        if job is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.job = job
        self.job_id: uuid.UUID = job.id
        self.last_sent = after
        self.lock = asyncio.Lock()
        self.group = job_group(job.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if self.stream_reader is not None:
            # Before the log's replay: the text does not wait for the events (the two are
            # ordered each in itself, not with each other).
            self.stream_reader.job_id = job.id
            self._stream_forward_start()
        async with self.lock:
            await self._send_from_log()
        self.watchdog = asyncio.create_task(self._resync_periodically())
        await self.recheck_start()  # credentials and access, while open (ws_guard)

    async def access_still_granted(self, user) -> bool:
        return await _job_for(user, self.job_id) is not None

    async def disconnect(self, code) -> None:
        await self.recheck_stop()
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.streamer is not None:
            self.streamer.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    def _stream_forward_start(self) -> None:
        if self.stream_reader is not None and (self.streamer is None or self.streamer.done()):
            self.streamer = asyncio.create_task(self._stream_forward())

    async def _stream_forward(self) -> None:
        """Send the job's stream from the reader's position until the job has finished
        and the stream went quiet (then the Redis connection is freed; a task that runs
        again, a retry from the dashboard, starts forwarding anew from where it was)."""
        idle_ms = int(settings.AGENTBUS_STREAM_IDLE_SECONDS * 1000)
        try:
            while True:
                try:
                    batch = await self.stream_reader.next_batch(block_ms=idle_ms)
                except RedisError:
                    # Redis away for a moment: read again from the same position, so
                    # nothing is lost or sent twice once it is back.
                    logger.warning("reading the stream of job %s failed; trying again", self.job_id, exc_info=True)
                    await asyncio.sleep(1.0)
                    continue
                for message in batch:
                    await self.send(text_data=json.dumps(message))
                if not batch or any(m["type"] in CLOSING for m in batch):
                    position = await _job_position(self.job_id)
                    if position is None or (position[1] in JOB_TERMINAL and not batch):
                        return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("following the stream of job %s for a websocket failed", self.job_id)
        finally:
            self.stream_reader.close()  # leaves the process's hub of the job

    @live_verified
    async def job_events(self, message: dict) -> None:
        if any(e.get("type") == "task.status" and e.get("status") == "running" for e in message["events"]):
            self._stream_forward_start()
        async with self.lock:
            for event in message["events"]:
                seq = event["seq"]
                if seq <= self.last_sent:
                    continue
                if seq > self.last_sent + 1:
                    await self._send_from_log()  # fills the gap, and usually this event too
                    # Not in the log: only what the log holds moves last_sent, so a bogus
                    # seq cannot make the real events that follow look like duplicates.
                    continue
                await self._send(event)

    async def _send_from_log(self) -> None:
        while True:
            events = await _events_after(self.job, self.last_sent)
            for event in events:
                await self._send(event)
            if len(events) < REPLAY_BATCH:
                return

    async def _send(self, event: dict) -> None:
        await self.send(text_data=json.dumps(event))
        self.last_sent = event["seq"]

    async def _resync_periodically(self) -> None:
        interval = settings.AGENTBUS_WS_RESYNC_INTERVAL
        try:
            while True:
                await asyncio.sleep(interval)
                position = await _job_position(self.job_id)
                if position is None:  # the job was deleted
                    await self.close()
                    return
                last_seq, status = position
                await self.channel_layer.group_add(self.group, self.channel_name)
                if last_seq > self.last_sent:
                    async with self.lock:
                        await self._send_from_log()
                # A finished job rarely changes again: look less often.
                interval = settings.AGENTBUS_WS_RESYNC_INTERVAL * (6 if status in JOB_TERMINAL else 1)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("resync of job %s for a websocket failed; the socket closes", self.job_id)
            await self.close()


class JobListConsumer(CredentialRecheck, AsyncWebsocketConsumer):
    """``/ws/jobs``: status changes of the caller's jobs (every job, for staff).

    Each message is a ``job.status`` or ``task.status`` event, carrying its ``job`` and
    that job's ``seq``. This is a change feed for a list, not a log to resume: a client
    reads ``GET /jobs`` when it (re)connects and applies the changes that follow, or
    opens ``/ws/jobs/{id}`` for a job's complete, resumable history.
    """

    async def connect(self) -> None:
        self.group: str | None = None
        if not _authenticated(self.scope):
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        user = self.scope["user"]
        self.group = STAFF_JOBS_GROUP if user.is_staff else user_jobs_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.recheck_start()

    async def access_still_granted(self, user) -> bool:
        return user.is_staff or self.group != STAFF_JOBS_GROUP  # a demoted staff member

    async def disconnect(self, code) -> None:
        await self.recheck_stop()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    @live_verified
    async def jobs_changed(self, message: dict) -> None:
        for event in message["events"]:
            await self.send(text_data=json.dumps(event))
