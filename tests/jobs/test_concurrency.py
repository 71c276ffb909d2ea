"""Many transitions of one job at once, on real PostgreSQL: nothing deadlocks, nothing
answers 5xx, and every job ends in one consistent state.

Each test runs several rounds of threads released together by a barrier, each thread
with its own database connection, doing what the web process, the workers and the
orchestrator do concurrently in production (cancel over REST, progress, success with
spawn, failure and retry, review decisions, the same Idempotency-Key sent N times).
Before the lifecycle took the job row first everywhere, the cancel-versus-progress
round deadlocked in PostgreSQL within a few rounds (cancel locked the job then its
tasks, a worker its task then the job).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter

import pytest
from django.db import connections
from rest_framework.test import APIClient

from jobs.lifecycle import (
    job_advance,
    task_claim,
    task_fail_attempt,
    task_progress,
    task_succeed,
    task_usage_record,
)
from jobs.models import Job, JobEvent, Review, Task
from jobs.services import job_submit
from tests.conftest import client_for, make_user, plan

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 6


def together(*actions) -> list:
    """Run the callables at once (a barrier releases them together); returns what each
    returned or raised. Every thread closes its own connection."""
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)

    def run(i, action):
        try:
            barrier.wait()
            results[i] = action()
        except BaseException as exc:  # reported to the test, not lost in the thread
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung (a lock wait that never ended)"
    return results


def assert_no_crash(results) -> None:
    crashes = [r for r in results if isinstance(r, BaseException)]
    assert not crashes, crashes


def assert_consistent(job_id) -> None:
    """A finished job holds nothing open; its log is gap-free."""
    job = Job.objects.get(pk=job_id)
    statuses = set(Task.objects.filter(job=job).values_list("status", flat=True))
    if job.is_finished:
        assert statuses <= {"succeeded", "failed", "cancelled", "skipped"}, (job.status, statuses)
        assert not Review.objects.filter(job=job, status="pending").exists()
    seqs = list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, job.last_seq + 1))
    # the job's status events end with its status
    last = JobEvent.objects.filter(job=job, type="job.status").order_by("-seq").first()
    assert last.status == job.status


def running_job(owner, width: int = 3):
    """A job whose root tasks are running on (pretend) workers."""
    tasks = [{"key": f"t{i}", "agent": "unserved_echo"} for i in range(width)]
    tasks.append({"key": "after", "agent": "unserved_echo", "depends_on": [t["key"] for t in tasks]})
    job, _ = job_submit(owner=owner, spec={"plan": plan(*tasks)})
    claimed = [
        task_claim(task_id=str(t.id), attempt=1, worker=f"w{i}")
        for i, t in enumerate(Task.objects.filter(job=job).exclude(key="after"))
    ]
    return job, claimed


def test_cancel_over_rest_racing_progress_success_failure_and_spawn_never_deadlocks_or_answers_5xx():
    alice = make_user("racer")
    api = client_for(alice)
    outcomes = Counter(cancel_round(alice, api) for _ in range(ROUNDS))
    assert outcomes[200] == ROUNDS


def cancel_round(alice, api) -> int:
    job, (t0, t1, t2) = running_job(alice)

    def progress(task=t0):
        return [task_progress(task=task, fraction=i / 10, message="working") for i in range(10)]

    def cancel():
        client = APIClient()
        client.credentials(**api._credentials)
        response = client.post(f"/jobs/{job.id}/cancel")
        return response.status_code

    results = together(
        progress,
        cancel,
        lambda: task_succeed(task=t1, output={"ok": 1}, spawn=[{"key": "extra", "agent": "unserved_echo"}]),
        lambda: task_fail_attempt(task=t2, error="boom", retryable=True),
        lambda: task_usage_record(task=t0, prompt_tokens=1, completion_tokens=1, total_tokens=2),
    )
    assert_no_crash(results)
    assert results[1] in (200, 409), results[1]
    job.refresh_from_db()
    assert job.status == "cancelled"  # nothing else could finish it in this race
    assert not Task.objects.filter(job=job, status__in=["running", "queued", "pending"]).exists()
    assert_consistent(job.id)
    return results[1]


def test_workers_finishing_every_task_of_a_job_at_once_dispatch_the_dependent_exactly_once():
    owner = make_user("fan-in")
    for _ in range(ROUNDS):
        job, claimed = running_job(owner, width=6)
        results = together(*[lambda t=t: task_succeed(task=t, output={"k": t.key}) for t in claimed])
        assert_no_crash(results)
        assert [bool(r) for r in results] == [True] * 6
        after = Task.objects.get(job=job, key="after")
        assert (after.status, after.attempt) == ("queued", 1)
        assert JobEvent.objects.filter(job=job, task=after, status="queued").count() == 1
        assert_consistent(job.id)


def test_an_orchestrator_pass_racing_the_workers_dispatches_nothing_twice():
    owner = make_user("pass-race")
    for _ in range(ROUNDS):
        job, claimed = running_job(owner, width=4)
        actions = [lambda t=t: task_succeed(task=t, output={}) for t in claimed]
        actions += [lambda j=job.id: job_advance(j), lambda j=job.id: job_advance(j)]
        assert_no_crash(together(*actions))
        assert JobEvent.objects.filter(job=job, type="task.status", status="queued").count() == 5
        assert_consistent(job.id)


def review_job(owner):
    job, _ = job_submit(owner=owner, spec={"plan": plan({"key": "draft", "agent": "draft", "review": "after"})})
    task = Task.objects.get(job=job)
    claimed = task_claim(task_id=str(task.id), attempt=1, worker="w")
    assert task_succeed(task=claimed, output={"text": "proposed"})
    return job, Review.objects.get(job=job, status="pending")


def test_two_reviewers_and_a_cancel_racing_on_one_gate_record_one_outcome():
    owner = make_user("owner")
    staff = client_for(make_user("editor", staff=True))
    api = client_for(owner)
    for _ in range(ROUNDS):
        review_round(owner, staff, api)


def review_round(owner, staff, api) -> None:
    job, review = review_job(owner)

    def decide(client, decision):
        def run():
            c = APIClient()
            c.credentials(**client._credentials)
            return c.post(f"/reviews/{review.id}/decision", {"decision": decision}, format="json").status_code

        return run

    def cancel():
        c = APIClient()
        c.credentials(**api._credentials)
        return c.post(f"/jobs/{job.id}/cancel").status_code

    results = together(decide(api, "approve"), decide(staff, "reject"), cancel)
    assert_no_crash(results)
    assert all(code in (200, 409) for code in results), results
    review.refresh_from_db()
    assert review.status in ("decided", "expired")
    decided = [code for code in results[:2] if code == 200]
    assert len(decided) <= 1  # one decision at most; a cancel first closes the gate
    assert_consistent(job.id)


def test_the_same_idempotency_key_sent_at_once_makes_one_job_and_answers_every_request():
    owner = make_user("retrier")
    api = client_for(owner)
    for _ in range(ROUNDS):
        same_key_round(owner, api, uuid.uuid4().hex)


def same_key_round(owner, api, key: str) -> None:
    body = {"plan": plan({"key": "a", "agent": "unserved_echo"})}

    def submit(payload=body):
        c = APIClient()
        c.credentials(**api._credentials)
        response = c.post("/jobs", payload, format="json", HTTP_IDEMPOTENCY_KEY=key)
        return response.status_code, response.json().get("id")

    results = together(*[submit for _ in range(8)])
    assert_no_crash(results)
    codes = Counter(code for code, _ in results)
    assert codes[201] == 1 and codes[200] == 7, codes
    assert len({job_id for _, job_id in results}) == 1
    assert Job.objects.filter(owner=owner, idempotency_key=key).count() == 1
    assert Task.objects.filter(job__idempotency_key=key).count() == 1


def test_the_same_idempotency_key_with_different_bodies_makes_one_job_and_422s_the_others():
    owner = make_user("reuser")
    api = client_for(owner)
    for _ in range(ROUNDS):
        reused_key_round(owner, api, uuid.uuid4().hex)


def reused_key_round(owner, api, key: str) -> None:
    bodies = [{"plan": plan({"key": f"k{i}", "agent": "unserved_echo"})} for i in range(6)]
    random.shuffle(bodies)

    def submit(payload):
        def run():
            c = APIClient()
            c.credentials(**api._credentials)
            response = c.post("/jobs", payload, format="json", HTTP_IDEMPOTENCY_KEY=key)
            return response.status_code, response.json()

        return run

    results = together(*[submit(b) for b in bodies])
    assert_no_crash(results)
    codes = Counter(code for code, _ in results)
    assert codes == {201: 1, 422: 5}, codes
    assert all(body["error"] == "idempotency_key_reused" for code, body in results if code == 422)
    assert Job.objects.filter(owner=owner, idempotency_key=key).count() == 1


def test_admissions_racing_cancels_and_successes_never_deadlock_and_never_send_a_cancelled_task():
    """jobs.scheduling admits queued tasks outside the job lock (SKIP LOCKED rows, a
    transaction of its own): racing the job-locked transitions, it must neither wait in a
    cycle nor mark sent a task that a cancel ended."""
    from jobs.lifecycle import job_cancel
    from jobs.scheduling import tasks_admit

    owner = make_user("admit-racer")
    for _ in range(ROUNDS):
        # The unserved queue has no worker: one task in flight at a time, the rest wait.
        jobs = [
            job_submit(
                owner=owner, spec={"plan": plan(*[{"key": f"t{i}", "agent": "unserved_echo"} for i in range(4)])}
            )[0]
            for _ in range(3)
        ]
        sent = Task.objects.filter(job__in=jobs, sent_at__isnull=False).first()
        claimed = task_claim(task_id=str(sent.id), attempt=1, worker="w")
        results = together(
            lambda: [tasks_admit({"unserved"}) for _ in range(5)],
            lambda: [tasks_admit({"unserved"}) for _ in range(5)],
            lambda first=jobs[0]: job_cancel(job_id=first.id),
            lambda second=jobs[1]: job_cancel(job_id=second.id),
            lambda task=claimed: task_succeed(task=task, output={"ok": 1}),
        )
        assert_no_crash(results)
        for job in jobs:
            assert_consistent(job.id)
        for job in jobs[:2]:
            assert Job.objects.get(pk=job.pk).status == "cancelled"
        # In flight on the queue: at most its depth (no worker: one), whatever raced.
        in_flight = Task.objects.filter(queue="unserved", status__in=["queued", "running"], sent_at__isnull=False)
        assert in_flight.count() <= 1, list(in_flight.values_list("key", "status"))
        Task.objects.filter(queue="unserved", status__in=["queued", "running", "pending"]).update(status="cancelled")


def test_successes_that_admit_in_their_own_transaction_never_deadlock_with_each_other_or_cancels(settings):
    """A worker's success admits waiting work before it commits (admit_with_success):
    it takes the admission's lock while holding its job's row, so the order is the job,
    then the admission lock, and an admission never waits for a job (its rows are taken
    SKIP LOCKED). Two successes of one job, one of another job (each admitting) and a
    cancel race each round. An admission that locked the jobs of what it admits deadlocks here
    (it holds the admission lock and waits for a job whose success waits for that lock)."""
    from core.redis import redis_client
    from jobs.lifecycle import job_cancel

    owner = make_user("admit-in-success")
    handed_over = 0
    for _ in range(ROUNDS):
        settings.AGENTBUS_QUEUE_PREFETCH = 0  # submitted: one task in flight, the rest wait
        jobs = [
            job_submit(
                owner=owner, spec={"plan": plan(*[{"key": f"t{i}", "agent": "unserved_echo"} for i in range(4)])}
            )[0]
            for _ in range(3)
        ]
        # Running as if their messages had come: two of the first job, one of the second.
        first = Task.objects.filter(job=jobs[0]).order_by("key")[:2]
        second = Task.objects.filter(job=jobs[1]).order_by("key")[:1]
        running = [task_claim(task_id=str(t.id), attempt=1, worker="w") for t in [*first, *second]]
        settings.AGENTBUS_QUEUE_PREFETCH = 8  # room for the successes to admit the waiting ones
        # A worker takes a task admitted for it only when nothing is on its RQ list ahead.
        redis_client().delete("rq:queue:unserved")
        results = together(
            *[
                lambda task=task: task_succeed(task=task, output={"ok": 1}, handoff_queue="unserved")
                for task in running
            ],
            lambda third=jobs[2]: job_cancel(job_id=third.id),
        )
        assert_no_crash(results)
        assert all(results[i].committed for i in range(3))
        handed = [results[i].handoff for i in range(3) if results[i].handoff is not None]
        handed_over += len(handed)
        for message in handed:  # admitted for the worker, never a task of the cancelled job
            assert Task.objects.get(pk=message.task_id).status == "queued"
            assert Task.objects.get(pk=message.task_id).job_id != jobs[2].id
        for job in jobs:
            assert_consistent(job.id)
        Task.objects.filter(queue="unserved", status__in=["queued", "running", "pending"]).update(status="cancelled")
    assert handed_over, "no success admitted anything: the race above did not take place"


def test_an_admission_skips_a_task_whose_job_transaction_holds_it_and_sends_it_next_time():
    """Admission never waits on a job's transaction: a waiting task whose row another
    transaction holds is left for the next admission (SKIP LOCKED), which sends it."""
    import psycopg

    from jobs.scheduling import tasks_admit
    from tests.conftest import database_url

    owner = make_user("admit-skipper")
    job, _ = job_submit(
        owner=owner, spec={"plan": plan(*[{"key": f"t{i}", "agent": "unserved_echo"} for i in range(2)])}
    )
    waiting = Task.objects.get(job=job, sent_at__isnull=True)
    # The one in flight ends (as if run), so the queue has room for the waiting one.
    Task.objects.filter(job=job, sent_at__isnull=False).update(status="succeeded")
    holder = psycopg.connect(database_url())
    try:
        holder.execute("SELECT 1 FROM jobs_task WHERE id = %s FOR UPDATE", [waiting.id])
        results: list = []

        def admit() -> None:
            try:
                results.append(tasks_admit({"unserved"}))
            finally:
                connections.close_all()

        admitter = threading.Thread(target=admit)
        admitter.start()
        admitter.join(5)
        assert not admitter.is_alive(), "the admission waited for the job's transaction"
        assert Task.objects.get(pk=waiting.pk).sent_at is None
    finally:
        holder.rollback()
        holder.close()
    admitter.join(30)
    tasks_admit({"unserved"})
    assert Task.objects.get(pk=waiting.pk).sent_at is not None
