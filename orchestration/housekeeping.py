"""The orchestrator's steps that need a clock but no job: schedules that fall due,
webhook deliveries, retention. Each is guarded on its own, so one failing (a broken
schedule, Chroma down) never stops the others or the orchestrator."""

from __future__ import annotations

import logging

from retention.services import retention_step
from schedules.services import schedules_fire_due
from webhooks.outbox import webhooks_step

logger = logging.getLogger("agentbus.orchestrator")

STEPS = (schedules_fire_due, webhooks_step, retention_step)


def housekeeping_steps() -> bool:
    """Run each step once; True when one of them found work."""
    found = False
    for step in STEPS:
        try:
            found |= step() > 0
        except Exception:
            logger.exception("%s failed; retried next pass", step.__name__)
    return found
