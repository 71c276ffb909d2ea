"""Sending to Channels groups from synchronous code without waiting for it.

``async_to_sync(layer.group_send)`` spins up an event loop for each call, and
channels_redis opens its connections per loop, so every call paid a new Redis
connection: about 5 ms on the commit path of every task state change. Here each process
keeps one event loop in a daemon thread with one sender task; callers put messages on
its queue and return at once. Messages leave in the order they were queued. Delivery
is at-most-once, as the channel layer's always is; the job event log is the truth that
clients catch up from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from core.live_signing import live_sign

logger = logging.getLogger(__name__)

# A burst beyond this (the channel layer down, say) is dropped, not buffered forever.
MAX_PENDING = 10_000


class _Sender:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="channel-sender", daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue: asyncio.Queue = asyncio.Queue(MAX_PENDING)
        self.loop.create_task(self._drain())
        self.ready.set()
        self.loop.run_forever()

    async def _drain(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        while True:
            group, message = await self.queue.get()
            try:
                await layer.group_send(group, message)
            except Exception:
                logger.warning(
                    "group_send to %s failed; clients will catch up from the event log", group, exc_info=True
                )
            finally:
                self.queue.task_done()

    def _put(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            logger.warning("live sender queue full; dropped a message for %s", item[0])

    def send(self, group: str, message: dict) -> None:
        self.loop.call_soon_threadsafe(self._put, (group, message))


_sender: _Sender | None = None
_lock = threading.Lock()


def group_send_nowait(group: str, message: dict) -> None:
    """Queue ``message`` for the Channels group; returns immediately."""
    global _sender
    sender = _sender
    if sender is None or sender.pid != os.getpid():  # first use, or a forked child
        with _lock:
            if _sender is None or _sender.pid != os.getpid():
                _sender = _Sender()
            sender = _sender
    sender.send(group, live_sign(message))  # consumers verify it (live_signing)


def flush(timeout: float = 2.0) -> bool:
    """Wait until every queued message has been handed to the channel layer (for
    shutdown and tests); True if it drained in time."""
    sender = _sender
    if sender is None or sender.pid != os.getpid():
        return True
    future = asyncio.run_coroutine_threadsafe(sender.queue.join(), sender.loop)
    try:
        future.result(timeout)
        return True
    except TimeoutError:
        future.cancel()
        return False
