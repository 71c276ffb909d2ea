"""Who runs first (jobs.scheduling), on real processes: an orchestrator and RQ workers on
the ``sched`` queue, PostgreSQL and Redis; jobs submitted as users submit them.

Each test starts its own processes with the policy settings it needs (the same in this
process, which admits after its own submissions), and reads what happened from the
task rows: when each was sent and started, with which attempt.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group

from jobs import scheduling
from jobs.models import SchedulingWeight, Task
from jobs.services import job_submit
from orchestration.leader import leader_identity
from tests.conftest import job_wait, make_user, plan, wait_for, worker_registered

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "sched"


@pytest.fixture
def start(processes, redis_flushed, settings):
    """``start(workers=1, **settings)``: an orchestrator and workers on the sched queue,
    with these settings in them and in this process; stopped when the test ends."""
    started = []

    def run(workers: int = 1, **overrides):
        # The sched queue exists only for these processes (django_rq knows AGENTBUS_QUEUES).
        env = {"AGENTBUS_QUEUES": "default,planner,llm,sched", **{k: str(v) for k, v in overrides.items()}}
        for name, value in overrides.items():
            setattr(settings, name, value)
        redis_flushed.delete(f"rq:workers:{QUEUE}")
        started.append(processes.start("orchestrate", name="orchestrator", env=env))
        for i in range(workers):
            started.append(processes.start("rqworker", QUEUE, name=f"sched-worker-{i}", env=env))
        wait_for(leader_identity, timeout=30, message="the orchestrator to lead")
        wait_for(
            lambda: redis_flushed.scard(f"rq:workers:{QUEUE}") >= workers,
            timeout=30,
            message=f"{workers} workers on {QUEUE}",
        )
        assert worker_registered(redis_flushed, QUEUE)
        # This process admits after its own submissions too: forget the workers it
        # counted for an earlier test (cached for two seconds), or it sizes the queue
        # by them (seen: a queue taken for one worker's, so a submission did not admit).
        scheduling._workers_cache.clear()
        return SimpleNamespace(processes=started)

    yield run
    for proc in started:
        processes.stop(proc)


def submit(owner, agent: str = "paced", *, priority: int = 0, concurrency: dict | None = None, **task_input):
    spec = {"plan": plan({"key": "t", "agent": agent, "input": task_input}), "priority": priority}
    if concurrency:
        spec["concurrency"] = concurrency
    job, _ = job_submit(owner=owner, spec=spec)
    return job


def task_of(job) -> Task:
    return Task.objects.get(job=job, key="t")


def all_finish(jobs, timeout: float = 60.0) -> list[Task]:
    for job in jobs:
        assert job_wait(job.id, timeout=timeout).status == "succeeded", task_of(job).error
    return [task_of(job) for job in jobs]


def busy(owner, seconds: float = 1.0) -> list:
    """Jobs that fill every slot of the queue (one worker, plus the prefetch), so that
    what comes next waits in PostgreSQL for the policy to order it."""
    slots = 1 + django_settings.AGENTBUS_QUEUE_PREFETCH
    return [submit(owner, seconds=seconds, n=f"filler{i}") for i in range(slots)]


def start_order(tasks: list[Task]) -> list[Task]:
    return sorted(tasks, key=lambda t: t.started_at)


def test_priorities_run_in_strict_order_and_without_aging_the_lowest_band_runs_last(start):
    start(workers=1, AGENTBUS_OLDEST_SHARE=0)
    owners = [make_user(f"prio{i}") for i in range(3)]
    fillers = busy(owners[0])
    # The lowest band first: first come, but last served when priority is strict; the
    # jobs come from three users, so priority is decided across users' lines too.
    priorities = [-5, 0, 5, 10, 0, 5, 10, -1, 3, 3]
    jobs = [submit(owners[i % 3], priority=p, n=i) for i, p in enumerate(priorities)]
    waiting = Task.objects.filter(job__in=jobs, status="queued", sent_at__isnull=True).count()
    assert waiting == len(jobs)  # nothing jumped the queue while the fillers run
    all_finish(fillers)
    ran = start_order(all_finish(jobs))
    order = [t.priority for t in ran]
    assert order == sorted(priorities, reverse=True), order
    assert ran[-1].priority == -5 and all(t.attempt == 1 for t in ran)


def test_aging_gives_the_oldest_task_a_share_so_the_lowest_band_does_not_starve(start):
    # One slot in two goes to the longest waiting task: the low one cannot wait behind
    # all twenty (it would, with the share off: the test above).
    start(workers=1, AGENTBUS_OLDEST_SHARE=2)
    owner = make_user("aging")
    fillers = busy(owner)
    low = submit(owner, priority=-5, n="low")
    flood = [submit(owner, priority=10, n=i) for i in range(20)]
    all_finish(fillers)
    ran = start_order(all_finish([low, *flood]))
    position = [t.job_id for t in ran].index(low.id)
    assert position < len(flood) - 5, f"the low-priority task started {position + 1}th of {len(ran)}"


def test_a_users_flood_does_not_hold_back_another_user(start):
    start(workers=1, AGENTBUS_OLDEST_SHARE=0)
    flooder, other = make_user("flooder"), make_user("other")
    fillers = busy(flooder)
    flood = [submit(flooder, n=i) for i in range(20)]
    others = [submit(other, n=f"b{i}") for i in range(3)]
    all_finish(fillers)
    ran = start_order(all_finish([*flood, *others]))
    # Though they came last, behind twenty, the other user's three take turns with the
    # flooder's from the first slot that frees (neither was served more than the other
    # in the window, so it is round robin; a flooder served for longer yields more).
    names = [t.input["n"] for t in ran]
    assert {"b0", "b1", "b2"} <= set(names[:6]), names[:8]
    assert names[:6:2] == ["b0", "b1", "b2"] or names[1:6:2] == ["b0", "b1", "b2"], names[:8]
    reasons = {t.wait_reason for t in Task.objects.filter(job__in=flood)}
    assert reasons <= {"", "capacity", "fair_share"}


def test_weights_share_the_workers_in_proportion(start):
    start(workers=1, AGENTBUS_OLDEST_SHARE=0)
    heavy, light, filler = make_user("heavy"), make_user("light"), make_user("filler")
    group = Group.objects.create(name="paying")
    heavy.groups.add(group)
    SchedulingWeight.objects.create(group=group, weight=3)
    fillers = busy(filler)
    jobs = [submit(heavy, n=f"h{i}") for i in range(12)] + [submit(light, n=f"l{i}") for i in range(12)]
    all_finish(fillers)
    ran = start_order(all_finish(jobs))
    first_eight = [t.input["n"][0] for t in ran[:8]]
    assert first_eight.count("h") == 6, first_eight  # 3 to 1 while both wait


def test_a_concurrency_key_caps_its_tasks_in_flight_and_others_go_past(start, alice):
    start(workers=3)
    owner = alice.user
    limited = [submit(owner, seconds=0.4, n=i, concurrency={"key": "customer-42", "limit": 2}) for i in range(8)]
    free = [submit(owner, seconds=0.4, n=f"free{i}") for i in range(3)]
    peak, reasons, stop = [0], set(), threading.Event()

    def sample():
        while not stop.is_set():
            running = Task.objects.filter(job__in=limited, status="running").count()
            peak[0] = max(peak[0], running)
            assert running <= 2, f"{running} tasks of customer-42 running at once"
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        detail = wait_for(
            lambda: next(
                (
                    d
                    for d in (alice.get(f"/jobs/{j.id}").json() for j in limited)
                    if d["tasks"][0]["waiting"] and d["tasks"][0]["waiting"]["reason"] == "concurrency_key"
                ),
                None,
            ),
            timeout=20,
            message="a task waiting on its concurrency key",
        )
        reasons.add(detail["tasks"][0]["waiting"]["reason"])
        tasks = all_finish([*limited, *free])
    finally:
        stop.set()
        sampler.join(5)
    assert peak[0] == 2
    assert all(t.attempt == 1 for t in tasks)  # waiting spent no attempt
    assert alice.get(f"/jobs/{limited[0].id}").json()["concurrency"] == {"key": "customer-42", "limit": 2}
    # The jobs without a key did not wait for the key's: all done before the last of them.
    last_limited = max(t.started_at for t in tasks if t.job_id in {j.id for j in limited})
    assert max(t.started_at for t in tasks if t.job_id in {j.id for j in free}) < last_limited


def test_a_concurrency_key_is_the_owners_own(start):
    start(workers=2)
    a, b = make_user("key-a"), make_user("key-b")
    mine = [submit(a, seconds=0.5, n=i, concurrency={"key": "shared-name", "limit": 1}) for i in range(2)]
    theirs = submit(b, seconds=0.1, n="b", concurrency={"key": "shared-name", "limit": 1})
    (done,) = all_finish([theirs])
    first = task_of(mine[0])
    # b's task ran while a's first held "shared-name": the names do not collide.
    assert first.finished_at is None or done.started_at < first.finished_at
    all_finish(mine)


def test_an_agents_rate_limit_holds_over_every_window_without_spending_attempts(start, alice, redis_flushed):
    window = 2.0
    start(workers=3, AGENTBUS_RATE_WINDOW_SECONDS=window)
    # Every request the limiter counts, as Redis stamps it (ms, its own clock), sampled
    # faster than an entry ages out of the window.
    counted: dict[bytes, float] = {}
    stop = threading.Event()

    def record():
        while not stop.is_set():
            for member, score in redis_flushed.zrange("agentbus:agent:rated:rate:requests", 0, -1, withscores=True):
                counted[member] = score / 1000
            time.sleep(0.1)

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    try:
        jobs = [submit(alice.user, "rated", n=i) for i in range(8)]
        seen = wait_for(
            lambda: next(
                (
                    d
                    for d in (alice.get(f"/jobs/{j.id}").json() for j in jobs)
                    if (d["tasks"][0]["waiting"] or {}).get("reason") == "rate_limit"
                ),
                None,
            ),
            timeout=20,
            message="a task waiting for its agent's rate limit",
        )
        assert seen["tasks"][0]["status"] == "queued"
        agents = {a["name"]: a for a in alice.get("/agents").json()["agents"]}
        assert agents["rated"]["rate_limit_rpm"] == 3 and agents["rated"]["rate_limit"]["requests_last_minute"] >= 1
        tasks = all_finish(jobs, timeout=60)
        time.sleep(0.3)
    finally:
        stop.set()
        recorder.join(5)
    assert len(counted) == 8, counted  # one request per task, each counted once
    stamps = sorted(counted.values())
    for i in range(len(stamps) - 3):  # no four requests inside one window
        assert stamps[i + 3] - stamps[i] >= window, f"4 requests within {stamps[i + 3] - stamps[i]:.3f}s"
    assert stamps[-1] - stamps[0] >= 2 * window  # 8 requests at 3 per window: three windows
    assert all(t.attempt == 1 for t in tasks)  # waiting spent no attempt
    assert set(counted) == {f"{t.id}:1".encode() for t in tasks}


def test_nothing_is_lost_when_redis_is_flushed_mid_run(start, redis_flushed, settings):
    start(workers=1, AGENTBUS_REQUEUE_AFTER=3)
    owner = make_user("flushed")
    jobs = [submit(owner, seconds=0.1, n=i) for i in range(15)]
    wait_for(
        lambda: Task.objects.filter(job__in=jobs, status="succeeded").count() >= 3,
        timeout=30,
        message="three tasks done",
    )
    redis_flushed.flushdb()  # the queue's messages, the hints, the leader lock: all gone
    tasks = all_finish(jobs, timeout=60)
    assert all(t.attempt == 1 for t in tasks)
    assert sorted(t.output["n"] for t in tasks) == list(range(15))


def test_the_dashboard_and_the_metrics_say_why_a_task_waits(start, alice, settings, client):
    start(workers=1)
    owner = alice.user
    fillers = busy(owner, seconds=1.5)
    late = submit(owner, n="late")
    client.force_login(owner)
    page = client.get(f"/app/jobs/{late.id}/")
    assert page.status_code == 200
    assert 'data-waiting="capacity"' in page.content.decode()
    settings.AGENTBUS_METRICS_TOKEN = "scrape-secret"
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").content.decode()
    assert f'agentbus_tasks_waiting{{queue="{QUEUE}",reason="capacity"}} 1.0' in text
    all_finish([*fillers, late])
