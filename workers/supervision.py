"""Watching a running attempt from a side thread: heartbeat, timeout, cancellation.

While an agent runs in the worker's main thread, a supervisor thread
1. writes the task's heartbeat every AGENTBUS_TASK_HEARTBEAT_TIMEOUT / 3 seconds, so
   the orchestrator can tell a live worker from a dead one;
2. notices, from that same conditional UPDATE, when the attempt is no longer the
   running one (the job was cancelled, or the attempt was declared lost);
3. notices when the task's timeout has passed;
and in cases 2 and 3 interrupts the main thread with SIGUSR2, whose handler raises
TaskInterrupted inside the agent's code (a blocking sleep or socket read included).
The handler is armed only while the agent runs, so it never fires inside our own
bookkeeping.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time

from django.conf import settings
from django.db import connection

from agents.errors import TaskInterrupted
from jobs.lifecycle import task_heartbeat

logger = logging.getLogger(__name__)


class _Supervisor(threading.Thread):
    def __init__(self, *, task_id, attempt: int, timeout: float) -> None:
        super().__init__(name=f"supervise-{task_id}", daemon=True)
        self.task_id = task_id
        self.attempt = attempt
        self.deadline = time.monotonic() + timeout
        self.interval = settings.AGENTBUS_TASK_HEARTBEAT_TIMEOUT / 3
        self.stopped = threading.Event()
        self.reason: str | None = None
        self.main_ident = threading.main_thread().ident

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                wait = min(self.interval, max(0.0, self.deadline - time.monotonic()))
                if self.stopped.wait(wait):
                    return
                if time.monotonic() >= self.deadline:
                    self._interrupt("timeout")
                    return
                try:
                    alive = task_heartbeat(task_id=self.task_id, attempt=self.attempt)
                except Exception:
                    logger.exception("heartbeat for task %s failed; will try again", self.task_id)
                    continue
                if not alive:
                    self._interrupt("cancelled or no longer this worker's attempt")
                    return
        finally:
            connection.close()  # this thread's own connection

    def _interrupt(self, reason: str) -> None:
        self.reason = reason
        if not self.stopped.is_set():
            signal.pthread_kill(self.main_ident, signal.SIGUSR2)


@contextlib.contextmanager
def supervise(*, task_id, attempt: int, timeout: float):
    """Run the body under supervision; raises TaskInterrupted on timeout or cancel."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread; run unsupervised (tests, shells)
        return
    supervisor = _Supervisor(task_id=task_id, attempt=attempt, timeout=timeout)

    def on_signal(signum, frame):
        if supervisor.reason and not supervisor.stopped.is_set():
            raise TaskInterrupted(supervisor.reason)

    previous = signal.signal(signal.SIGUSR2, on_signal)
    supervisor.start()
    try:
        yield
    finally:
        supervisor.stopped.set()
        signal.signal(signal.SIGUSR2, previous)
        supervisor.join(timeout=5)
