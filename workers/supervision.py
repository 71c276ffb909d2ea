"""Watching a running attempt from a side thread: heartbeat, timeout, cancellation.

While an agent runs in the worker's main thread, the process's supervisor thread
1. writes the task's heartbeat every AGENTBUS_TASK_HEARTBEAT_TIMEOUT / 3 seconds, so
   the orchestrator can tell a live worker from a dead one;
2. notices, from that same conditional UPDATE, when the attempt is no longer the
   running one (the job was cancelled, or the attempt was declared lost);
3. notices when the task's timeout has passed;
and in cases 2 and 3 interrupts the main thread with SIGUSR2, whose handler raises
TaskInterrupted inside the agent's code (a blocking sleep or socket read included).
The handler is armed only while the agent runs, so it never fires inside our own
bookkeeping.

One thread per process watches one attempt after another (the main thread runs one at
a time). It is started with the first attempt, not with each: starting and joining a
thread per attempt cost about a millisecond of a short task's wall time on a busy
machine (the new thread has to be scheduled before the agent may start). Between
attempts it sleeps; an attempt that ends before its first heartbeat or its timeout
costs it no wake-up at all. Once nothing is watched it closes its own database
connection, as the thread per attempt did.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

from agents.errors import TaskInterrupted
from jobs.lifecycle import task_heartbeat

logger = logging.getLogger(__name__)


class _Watch:
    """One attempt under watch: when it is next due a heartbeat, when it times out, and
    why it was interrupted (set by the supervisor before it signals)."""

    def __init__(self, *, task_id, attempt: int, timeout: float) -> None:
        now = time.monotonic()
        self.task_id = task_id
        self.attempt = attempt
        self.interval = settings.AGENTBUS_TASK_HEARTBEAT_TIMEOUT / 3
        self.deadline = now + timeout
        self.next_beat = now + self.interval
        self.reason: str | None = None
        self.ended = False

    def due(self) -> float:
        return min(self.next_beat, self.deadline)


class _Supervisor(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="supervisor", daemon=True)
        self.cond = threading.Condition()
        self.watch: _Watch | None = None
        self.wake_at = math.inf  # when the thread wakes next by itself (inf: only when told)
        self.main_ident = threading.main_thread().ident
        self.pid = os.getpid()

    def begin(self, watch: _Watch) -> None:
        with self.cond:
            self.watch = watch
            if watch.due() < self.wake_at:  # else its own wake-up comes first, and finds it
                self.cond.notify()

    def end(self, watch: _Watch) -> None:
        # Before the lock: a signal sent while this waits for it then raises nothing.
        watch.ended = True
        with self.cond:
            if self.watch is watch:
                self.watch = None

    def run(self) -> None:
        while True:
            with self.cond:
                watch, now = self.watch, time.monotonic()
                if watch is None and connection.connection is None:
                    self.wake_at = math.inf
                    self.cond.wait()
                    continue
                if watch is not None and watch.due() > now:
                    self.wake_at = watch.due()
                    self.cond.wait(watch.due() - now)
                    continue
                self.wake_at = now
            if watch is None:
                connection.close()  # nothing watched: this thread's connection is not kept
            else:
                self._check(watch, now)

    def _check(self, watch: _Watch, now: float) -> None:
        if now >= watch.deadline:
            self._interrupt(watch, "timeout")
            return
        watch.next_beat = now + watch.interval
        try:
            close_old_connections()  # one the database dropped since the last heartbeat
            alive = task_heartbeat(task_id=watch.task_id, attempt=watch.attempt)
        except Exception:
            logger.exception("heartbeat for task %s failed; will try again", watch.task_id)
            return
        if not alive:
            self._interrupt(watch, "cancelled or no longer this worker's attempt")

    def _interrupt(self, watch: _Watch, reason: str) -> None:
        with self.cond:  # end() takes it too: an attempt that has ended is never signalled
            if self.watch is not watch or watch.ended:
                return
            watch.reason = reason
            self.watch = None
            signal.pthread_kill(self.main_ident, signal.SIGUSR2)


_supervisor: _Supervisor | None = None


def _the_supervisor() -> _Supervisor:
    """This process's supervisor thread, started on first use (again in a forked child,
    which inherits the variable but not the thread)."""
    global _supervisor
    if _supervisor is None or _supervisor.pid != os.getpid() or not _supervisor.is_alive():
        _supervisor = _Supervisor()
        _supervisor.start()
    return _supervisor


@contextlib.contextmanager
def supervise(*, task_id, attempt: int, timeout: float):
    """Run the body under supervision; raises TaskInterrupted on timeout or cancel."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread; run unsupervised (tests, shells)
        return
    supervisor = _the_supervisor()
    watch = _Watch(task_id=task_id, attempt=attempt, timeout=timeout)

    def on_signal(signum, frame):
        if watch.reason and not watch.ended:
            raise TaskInterrupted(watch.reason)

    previous = signal.signal(signal.SIGUSR2, on_signal)
    supervisor.begin(watch)
    try:
        yield
    finally:
        supervisor.end(watch)
        signal.signal(signal.SIGUSR2, previous)
