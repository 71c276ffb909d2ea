"""`python manage.py orchestrate`: the orchestrator process.

It does only what needs a clock or a recovery (jobs.lifecycle dispatches every task's
dependents in the transaction that commits its result): retries and deferrals falling
due, budget and review deadlines, messages lost with Redis, workers that went silent.
Jobs with explicit plans run to the end with no orchestrator at all; their retries and
deadlines wait for one to come back.

Shaped like healthchecks' sendalerts: a loop of small steps, each returning True when it
found work; SIGTERM sets a flag and the current step finishes. Several copies may run:
one holds the leader lock and works, the others wait to take over.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone
from redis.exceptions import RedisError

from core.heartbeats import orchestrator_heartbeat
from core.logging import log_context
from core.metrics import metrics_serve
from core.wakeup import wake_wait
from jobs.lifecycle import job_advance
from jobs.reviews.decisions import reviews_apply_deadlines, reviews_remind
from jobs.scheduling import tasks_admit
from orchestration.housekeeping import housekeeping_steps
from orchestration.leader import LeaderLock
from orchestration.reconciler import jobs_needing_attention, next_due_at, tasks_fail_silent, tasks_requeue_lost

logger = logging.getLogger("agentbus.orchestrator")


class Command(BaseCommand):
    help = "Run the orchestrator: retries and deadlines when due, and recovery of lost work."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit (for cron or debugging).")

    def handle(self, *args, **options) -> None:
        self.shutdown = False
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        metrics_serve(settings.AGENTBUS_METRICS_PORT)
        self.lock = LeaderLock(ttl=settings.AGENTBUS_LEADER_LOCK_TTL)
        self.next_pass = 0.0
        self.stdout.write(f"orchestrator {self.lock.identity} starting")
        was_leader = False
        try:
            while not self.shutdown:
                try:
                    leading = self.lock.hold()
                    orchestrator_heartbeat(self.lock.identity, leading=leading)
                except RedisError as exc:
                    logger.warning("redis unavailable (%s); retrying", exc)
                    time.sleep(1)
                    continue
                if leading != was_leader:
                    self.stdout.write(f"orchestrator {self.lock.identity} {'leads' if leading else 'stands by'}")
                    was_leader = leading
                if not leading:
                    time.sleep(settings.AGENTBUS_LEADER_LOCK_TTL / 5)
                    continue
                close_old_connections()
                self.pass_once()
                if options["once"]:
                    break
        finally:
            try:
                self.lock.release()
            except RedisError:
                pass
            self.stdout.write(f"orchestrator {self.lock.identity} stopped")

    def on_signal(self, signum, frame) -> None:
        self.shutdown = True

    def pass_once(self) -> bool:
        """One pass: wait for the next pass to fall due (a reconcile interval, or sooner
        when a retry is due or a hint asks for it), then run every step. Returns True
        when a step found work, which runs the next pass at once."""
        # Never wait longer than a third of the lock's TTL, so the lock is always renewed.
        wait = min(self.next_pass - time.monotonic(), settings.AGENTBUS_LEADER_LOCK_TTL / 3)
        if wait > 0 and self.step_wait(wait):
            return False  # woken early for a later time; go round and wait again
        found = self.step_due() | self.step_recover() | self.step_review_deadlines()
        self.step_admit()
        found |= housekeeping_steps()  # schedules, webhooks, retention (orchestration/housekeeping.py)
        self.next_pass = time.monotonic() + (0 if found else self.seconds_to_next_due())
        return found

    def step_wait(self, wait: float) -> bool:
        """Sleep until ``wait`` runs out or a hint arrives; True if the hint asked for a
        time still ahead (the pass is re-timed), False when it is time to work."""
        try:
            asked = wake_wait(timeout=wait)
        except RedisError as exc:
            logger.warning("cannot read wake-up hints (%s); reconciling from the database", exc)
            time.sleep(min(wait, 1))
            return False
        if asked is None:
            return False
        ahead = asked - time.time()
        if ahead <= 0:
            return False
        self.next_pass = min(self.next_pass, time.monotonic() + ahead)
        return True

    def seconds_to_next_due(self) -> float:
        interval = settings.AGENTBUS_RECONCILE_INTERVAL
        due = next_due_at()
        if due is None:
            return interval
        return max(0.0, min(interval, (due - timezone.now()).total_seconds()))

    def step_due(self) -> bool:
        """Settle the jobs with a retry due, a budget run out or an unsettled change."""
        found = False
        for job_id in jobs_needing_attention():
            found |= self.advance(job_id)
        return found

    def step_recover(self) -> bool:
        """Re-send lost messages; fail the attempts of workers that went silent."""
        found = False
        try:
            found |= tasks_requeue_lost() > 0
        except RedisError as exc:
            logger.warning("cannot re-send lost messages yet (%s)", exc)
        found |= tasks_fail_silent() > 0
        return found

    def step_admit(self) -> None:
        """Admit waiting tasks to queues with room (jobs.scheduling): after a worker
        joined, a rate limit's window moved on, or a hint was lost with Redis."""
        try:
            tasks_admit()
        except Exception:
            logger.exception("admitting waiting tasks failed; retried next pass")

    def step_review_deadlines(self) -> bool:
        """Remind reviewers of gates whose deadline nears; apply the default outcome of
        gates whose deadline passed (jobs.reviews.decisions)."""
        try:
            return (reviews_remind() + reviews_apply_deadlines()) > 0
        except Exception:
            logger.exception("applying review deadlines failed; retried next pass")
            return False

    def advance(self, job_id) -> bool:
        try:
            with log_context(job_id=job_id):
                return job_advance(job_id)
        except Exception:
            # One bad job must not stop the orchestrator; it is retried next pass.
            logger.exception("advancing job %s failed", job_id)
            return False
