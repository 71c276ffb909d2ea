"""`python manage.py orchestrate`: the orchestrator process.

Shaped like healthchecks' sendalerts: a loop of small steps, each returning True when
it found work; SIGTERM sets a flag and the current step finishes. Several copies may
run: one holds the leader lock and works, the others wait to take over.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from redis.exceptions import RedisError

from agentbus_site.logging import log_context
from agentbus_site.metrics import metrics_serve
from agentbus_site.system import orchestrator_heartbeat
from orchestration.housekeeping import housekeeping_steps
from orchestration.inbox import inbox_receive
from orchestration.leader import LeaderLock
from orchestration.services import job_advance, jobs_needing_attention, tasks_fail_silent, tasks_requeue_lost

logger = logging.getLogger("agentbus.orchestrator")


class Command(BaseCommand):
    help = "Run the orchestrator: plan jobs, dispatch ready tasks, retry, reconcile."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit (for cron or debugging).")

    def handle(self, *args, **options) -> None:
        self.shutdown = False
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        metrics_serve(settings.AGENTBUS_METRICS_PORT)
        self.lock = LeaderLock(ttl=settings.AGENTBUS_LEADER_LOCK_TTL)
        self.next_reconcile = 0.0
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
        """One pass: act on hints from the inbox, then, when due, reconcile from the DB."""
        # Wait no longer than a third of the lock's TTL, so the lock is always renewed.
        wait = min(settings.AGENTBUS_RECONCILE_INTERVAL, settings.AGENTBUS_LEADER_LOCK_TTL / 3)
        found = self.step_inbox(wait)
        if time.monotonic() >= self.next_reconcile:
            self.next_reconcile = time.monotonic() + settings.AGENTBUS_RECONCILE_INTERVAL
            found |= self.step_reconcile()
        return found

    def step_inbox(self, wait: float) -> bool:
        try:
            job_ids = inbox_receive(timeout=wait)
        except RedisError as exc:
            logger.warning("cannot read the inbox (%s); reconciling from the database", exc)
            time.sleep(min(wait, 1))
            return False
        for job_id in job_ids:
            self.advance(job_id)
        return bool(job_ids)

    def step_reconcile(self) -> bool:
        found = False
        for job_id in jobs_needing_attention():
            found |= self.advance(job_id)
        try:
            found |= tasks_requeue_lost() > 0
        except RedisError as exc:
            logger.warning("cannot re-send lost messages yet (%s)", exc)
        found |= tasks_fail_silent() > 0
        found |= self.step_review_deadlines()
        found |= housekeeping_steps()  # schedules, webhooks, retention (orchestration/housekeeping.py)
        return found

    def step_review_deadlines(self) -> bool:
        """Remind reviewers of gates whose deadline nears; apply the default outcome of
        gates whose deadline passed (jobs.reviews)."""
        from jobs.reviews import reviews_apply_deadlines, reviews_remind

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
