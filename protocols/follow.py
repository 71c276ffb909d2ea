"""A job's events, live, for server-side followers (the MCP progress notifications and
the A2A stream), as the job websocket delivers them.

1. Join the job's Channels group before reading the log, so an event committed after
   the read is sure to wake the follower.
2. Read the log after the last ``seq`` yielded; every wake-up (a live message, or the
   resync interval passing) reads the log again from there. The log is the truth and
   the layer only a doorbell, so lost, duplicated or reordered live messages change
   nothing; a lost final event is found on the next resync.
3. Each resync also joins the group again (membership Redis may have lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from jobs.events import job_group
from jobs.models import JobEvent

BATCH = 500


@database_sync_to_async
def _events_after(job_id, after: int) -> list[dict]:
    rows = JobEvent.objects.filter(job_id=job_id, seq__gt=after).order_by("seq")[:BATCH]
    return [row.as_message() for row in rows]


async def job_events_follow(job_id, *, after: int = 0, resync: float | None = None) -> AsyncIterator[dict]:
    """Yield the job's events after ``after``, in ``seq`` order, each once, forever (the
    caller stops; use ``contextlib.aclosing`` so the group is left)."""
    interval = resync if resync is not None else settings.AGENTBUS_WS_RESYNC_INTERVAL
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = job_group(job_id)
    await layer.group_add(group, channel)
    # One receiver for the whole follow: cancelling a layer's receive() unsubscribes
    # the channel (channels_redis' pub/sub layer), so waits with a timeout go on the
    # doorbell instead.
    bell = asyncio.Event()

    async def ring() -> None:
        while True:
            await layer.receive(channel)
            bell.set()

    receiver = asyncio.create_task(ring())
    last = after
    try:
        while True:
            bell.clear()
            while True:
                events = await _events_after(job_id, last)
                for event in events:
                    last = event["seq"]
                    yield event
                if len(events) < BATCH:
                    break
            try:
                await asyncio.wait_for(bell.wait(), interval)
            except TimeoutError:
                await layer.group_add(group, channel)
    finally:
        receiver.cancel()
        await layer.group_discard(group, channel)
