"""job_advance, called directly: dispatch safety under concurrency and constant cost."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from jobs.models import Job, JobEvent, Task
from jobs.services import job_submit
from orchestration.services import job_advance, jobs_needing_attention
from tests.conftest import make_user, plan
from workers.tasks import task_run

pytestmark = pytest.mark.django_db(transaction=True)


def wide_job(owner, width: int = 5, agent: str = "unserved_echo") -> Job:
    tasks = [{"key": f"root{i}", "agent": agent} for i in range(width)]
    tasks.append({"key": "join", "agent": agent, "depends_on": [t["key"] for t in tasks]})
    job, _ = job_submit(owner=owner, spec={"plan": plan(*tasks)})
    return job


def test_two_orchestrators_advancing_the_same_jobs_never_dispatch_a_task_twice():
    owner = make_user("racer")
    jobs = [wide_job(owner) for _ in range(15)]
    barrier = threading.Barrier(2)

    def orchestrator():
        barrier.wait()
        try:
            for _ in range(3):
                for job in jobs:
                    job_advance(job.id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=orchestrator) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    roots = Task.objects.filter(job__in=jobs).exclude(key="join")
    assert roots.count() == 75
    assert set(roots.values_list("status", "attempt")) == {("queued", 1)}
    queued_events = JobEvent.objects.filter(job__in=jobs, type="task.status", status="queued")
    assert queued_events.count() == 75
    assert len(set(queued_events.values_list("task_id", flat=True))) == 75
    assert set(Task.objects.filter(job__in=jobs, key="join").values_list("status", flat=True)) == {"pending"}
    for job in jobs:  # the logs stayed gap-free under the race
        seqs = list(job.events.order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))


def count_queries(func, *args) -> int:
    with CaptureQueriesContext(connection) as ctx:
        func(*args)
    return len(ctx.captured_queries)


def test_advancing_a_job_costs_the_same_queries_however_many_jobs_exist():
    owner = make_user("steady")
    first = wide_job(owner)
    plan_cost = count_queries(job_advance, first.id)
    noop_cost = count_queries(job_advance, first.id)

    for _ in range(60):  # history the orchestrator must not scan
        job_advance(wide_job(owner, width=3).id)

    later = wide_job(owner)
    assert count_queries(job_advance, later.id) == plan_cost
    assert count_queries(job_advance, later.id) == noop_cost
    assert plan_cost <= 10, plan_cost
    print(f"job_advance: {plan_cost} queries to plan and dispatch, {noop_cost} when nothing changed")


def test_running_a_task_costs_the_same_queries_however_many_tasks_exist():
    owner = make_user("worker-cost")
    job = wide_job(owner, width=2)
    job_advance(job.id)
    root0, root1 = Task.objects.filter(job=job, key__in=["root0", "root1"]).order_by("key")
    first_cost = count_queries(task_run, str(root0.id), 1, "unused-by-task_run")

    for _ in range(30):
        other = wide_job(owner, width=3)
        job_advance(other.id)

    second_cost = count_queries(task_run, str(root1.id), 1, "unused-by-task_run")
    assert first_cost == second_cost
    assert first_cost <= 14, first_cost
    print(f"task_run: {first_cost} queries per task")
    assert set(Task.objects.filter(job=job).exclude(key="join").values_list("status", flat=True)) == {"succeeded"}


def test_the_reconciler_finds_a_job_whose_hint_was_lost():
    owner = make_user("forgotten")
    job = wide_job(owner, width=1)  # submitted, its Redis hint ignored here
    assert job.id in jobs_needing_attention()
    job_advance(job.id)
    assert job.id not in jobs_needing_attention()
    assert Job.objects.get(pk=job.id).status == "running"


def test_a_task_starting_does_not_send_the_reconciler_back_to_its_job():
    owner = make_user("quiet")
    job = wide_job(owner, width=1)
    job_advance(job.id)
    assert job.id not in jobs_needing_attention()
    task = Task.objects.get(job=job, key="root0")
    from workers.services import task_claim, task_progress

    claimed = task_claim(task_id=str(task.id), attempt=1, worker="w")
    task_progress(task=claimed, fraction=0.5, message="half")
    assert job.id not in jobs_needing_attention()  # nothing for the orchestrator to do

    from workers.services import task_succeed

    task_succeed(task=claimed, output={"ok": True})
    assert job.id in jobs_needing_attention()  # the join task is now ready
