"""The lifecycle called directly: dispatch safety under concurrency, and a fixed, small
number of queries per step however large the tables grow."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.lifecycle import job_advance, task_claim, task_progress, task_succeed
from jobs.models import Job, JobEvent, Task
from jobs.services import job_submit
from orchestration.reconciler import jobs_needing_attention
from tests.conftest import make_user, plan
from workers.tasks import task_run

pytestmark = pytest.mark.django_db(transaction=True)


def wide_job(owner, width: int = 5, agent: str = "unserved_echo") -> Job:
    tasks = [{"key": f"root{i}", "agent": agent} for i in range(width)]
    tasks.append({"key": "join", "agent": agent, "depends_on": [t["key"] for t in tasks]})
    job, _ = job_submit(owner=owner, spec={"plan": plan(*tasks)})
    return job


def test_a_submitted_plan_has_its_roots_dispatched_before_the_submission_returns():
    job = wide_job(make_user("eager"), width=3)
    assert set(Task.objects.filter(job=job).exclude(key="join").values_list("status", "attempt")) == {("queued", 1)}
    assert Task.objects.get(job=job, key="join").status == "pending"
    assert job.id not in jobs_needing_attention()  # settled: nothing for the orchestrator


def test_two_orchestrators_settling_the_same_due_retries_never_dispatch_a_task_twice():
    owner = make_user("racer")
    jobs = [wide_job(owner) for _ in range(15)]
    # Every root failed once and waits for its retry, due now.
    Task.objects.filter(job__in=jobs).exclude(key="join").update(
        status="pending", next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
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
    assert set(roots.values_list("status", "attempt")) == {("queued", 2)}
    queued_events = JobEvent.objects.filter(job__in=jobs, type="task.status", status="queued", data__attempt=2)
    assert queued_events.count() == 75
    assert len(set(queued_events.values_list("task_id", flat=True))) == 75
    assert set(Task.objects.filter(job__in=jobs, key="join").values_list("status", flat=True)) == {"pending"}
    for job in jobs:  # the logs stayed gap-free under the race
        seqs = list(job.events.order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))


def queries_of(func, *args, **kwargs) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        result = func(*args, **kwargs)
    return len(ctx.captured_queries), result


def history(owner, jobs: int) -> None:
    """Finished jobs (with a task and three events each) that no step may scan: written
    in bulk by SQL, as months of history would be."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_job (id, owner_id, requirements, review_plan, priority, metadata, remember, status,
                                  error, request_digest, last_seq, advanced_seq, tokens_used, created_at, finished_at)
            SELECT gen_random_uuid(), %s, '', false, 0, '{}', false, 'succeeded', '', '', 3, 3, 0,
                   now() - (n || ' seconds')::interval, now()
            FROM generate_series(1, %s) AS n
            """,
            [owner.pk, jobs],
        )
        cursor.execute(
            """
            INSERT INTO jobs_task (id, job_id, key, agent, queue, input, depends_on, review, allow_failure,
                                   max_attempts, timeout, status, attempt, error, progress_message, worker,
                                   tokens_used, usage, created_at)
            SELECT gen_random_uuid(), id, 'a', 'echo', 'default', '{}', '[]', 'none', false, 3, 30,
                   'succeeded', 1, '', '', '', 0, '{}', created_at
            FROM jobs_job WHERE owner_id = %s
            """,
            [owner.pk],
        )
        cursor.execute(
            """
            INSERT INTO jobs_jobevent (job_id, seq, type, status, data, at)
            SELECT id, s, 'job.status', 'succeeded', '{}', created_at
            FROM jobs_job, generate_series(1, 3) AS s WHERE owner_id = %s
            """,
            [owner.pk],
        )
        cursor.execute("ANALYZE jobs_job; ANALYZE jobs_task; ANALYZE jobs_jobevent")


def step_costs(owner) -> dict[str, int]:
    """Queries of the per-task path: submit a two-task chain, claim its root, succeed it
    (which dispatches the dependent), claim and succeed the dependent (which ends the job)."""
    costs = {}
    costs["submit"], (job, _) = queries_of(
        job_submit,
        owner=owner,
        spec={
            "plan": plan(
                {"key": "a", "agent": "unserved_echo"}, {"key": "b", "agent": "unserved_echo", "depends_on": ["a"]}
            )
        },
    )
    a, b = Task.objects.filter(job=job).order_by("key")
    costs["claim"], claimed = queries_of(task_claim, task_id=str(a.id), attempt=1, worker="w")
    costs["succeed and dispatch"], _ = queries_of(task_succeed, task=claimed, output={"ok": 1})
    assert Task.objects.get(pk=b.pk).status == "queued"
    claimed = task_claim(task_id=str(b.id), attempt=1, worker="w")
    costs["succeed and finish"], _ = queries_of(task_succeed, task=claimed, output={"ok": 2})
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    return costs


def test_the_per_task_path_takes_a_small_fixed_number_of_queries_with_100k_jobs_in_the_database():
    owner = make_user("steady")
    small = step_costs(owner)
    history(make_user("history"), 100_000)
    assert Job.objects.count() > 100_000
    large = step_costs(owner)
    print(f"queries per step: {large} (empty database: {small})")
    assert large == small
    # Counted with BEGIN and COMMIT: every step but the claim is one transaction. A dispatch includes
    # jobs.scheduling's look at its queue (what is in flight and waiting): one statement.
    # A submission: the owner's row and active jobs (the quota), the queue's counts, and
    # the job, its tasks and its events in one INSERT statement.
    assert small["submit"] <= 6, small
    # The job's lock, the task's update read back by RETURNING and its event: one
    # statement, in no transaction of its own.
    assert small["claim"] == 1, small
    # The job's lock and the output's write in one statement; the tasks; the dependent's
    # dispatch (the queue's counts, its UPDATE); the events.
    assert small["succeed and dispatch"] <= 7, small
    # The job's lock and the output's write; the tasks; the job's end written with its
    # events in one statement (its result from the output in hand).
    assert small["succeed and finish"] <= 5, small


def test_running_a_task_costs_the_same_queries_however_many_tasks_exist():
    """task_run whole (claim, upstream, the agent, success dispatching the dependent)."""
    owner = make_user("worker-cost")
    first = wide_job(owner, width=1)
    first_cost, _ = queries_of(task_run, str(Task.objects.get(job=first, key="root0").id), 1, "unused-by-task_run")

    for _ in range(30):
        wide_job(owner, width=3)

    later = wide_job(owner, width=1)
    second_cost, _ = queries_of(task_run, str(Task.objects.get(job=later, key="root0").id), 1, "unused-by-task_run")
    assert first_cost == second_cost
    assert first_cost <= 8, first_cost
    print(f"task_run: {first_cost} queries per task, BEGIN and COMMIT included (the join dispatched within it)")
    for job in (first, later):
        assert Task.objects.get(job=job, key="root0").status == "succeeded"
        assert Task.objects.get(job=job, key="join").status == "queued"


def test_the_reconciler_finds_a_job_whose_settling_was_interrupted():
    owner = make_user("forgotten")
    job = wide_job(owner, width=1)
    # As if a process had written an event and died before settling the job.
    Job.objects.filter(pk=job.pk).update(advanced_seq=0)
    assert job.id in jobs_needing_attention()
    job_advance(job.id)
    assert job.id not in jobs_needing_attention()


def test_a_retry_falling_due_brings_the_reconciler_to_its_job():
    job = wide_job(make_user("patient"), width=1)
    Task.objects.filter(job=job, key="root0").update(
        status="pending", next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    assert job.id not in jobs_needing_attention()
    Task.objects.filter(job=job, key="root0").update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert job.id in jobs_needing_attention()
    assert job_advance(job.id)
    assert Task.objects.get(job=job, key="root0").status == "queued"


def test_no_step_of_a_task_sends_the_reconciler_to_its_job():
    owner = make_user("quiet")
    job = wide_job(owner, width=1)
    task = Task.objects.get(job=job, key="root0")
    claimed = task_claim(task_id=str(task.id), attempt=1, worker="w")
    task_progress(task=claimed, fraction=0.5, message="half")
    assert job.id not in jobs_needing_attention()
    task_succeed(task=claimed, output={"ok": True})
    assert Task.objects.get(job=job, key="join").status == "queued"  # dispatched by the success itself
    assert job.id not in jobs_needing_attention()
