"""An admission held by an agent's rate limit asks the orchestrator to look again when
the window allows one more request (core.wakeup), instead of leaving the task to the
orchestrator's next pass."""

from __future__ import annotations

import time

import pytest

from core.redis import redis_client
from core.wakeup import WAKE_KEY
from jobs.models import Task
from jobs.scheduling import tasks_admit
from jobs.services import job_submit
from tests.conftest import make_user, plan

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_task_held_by_its_agents_rate_limit_wakes_the_orchestrator_when_the_window_allows(settings):
    settings.AGENTBUS_QUEUE_PREFETCH = 10  # room on the queue: only the rate limit holds
    redis = redis_client()
    redis.delete(WAKE_KEY, "agentbus:agent:rated:rate:requests")
    owner = make_user("rated-waker")
    jobs = [job_submit(owner=owner, spec={"plan": plan({"key": "r", "agent": "rated"})})[0] for _ in range(4)]
    tasks_admit({"sched"})
    # rated takes three requests a window: the fourth task waits for it.
    assert Task.objects.filter(job__in=jobs, sent_at__isnull=False).count() == 3
    held = Task.objects.get(job__in=jobs, sent_at__isnull=True)
    assert held.wait_reason == "rate_limit"
    wakes = [float(at) for at in redis.lrange(WAKE_KEY, 0, -1)]
    assert wakes, "the orchestrator was not asked to look again"
    assert time.time() < max(wakes) <= time.time() + settings.AGENTBUS_RATE_WINDOW_SECONDS + 1
