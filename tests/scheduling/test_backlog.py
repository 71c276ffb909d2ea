"""What the scheduler reads does not grow with the backlog.

A dispatch (its look at the queue), a worker's admission and the orchestrator's
admission pass run with 20,000 tasks waiting on one queue, from five users; each
statement they send is replayed under ``EXPLAIN (ANALYZE, FORMAT JSON)`` and the rows
its scans touched (returned plus filtered out) are counted. Reads that scanned the line
(a count of the waiting tasks, a ranking of the whole line) would touch all 20,000.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.models import Job, Task
from jobs.scheduling import dispatch_plan, tasks_admit
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "backlog"
WAITING = 20_000
USERS = 5
# Rows a statement may touch: the tasks in flight, a few per fair key, the lock's row.
MOST_ROWS_READ = 50


def backlog(owners) -> Job:
    """WAITING queued tasks not yet sent, spread over the owners' fair keys, written in
    bulk by SQL as a deployment's backlog would have been."""
    job = Job.objects.create(owner=owners[0], status="running", plan={"tasks": []})
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_task (id, job_id, key, agent, queue, input, depends_on, review, allow_failure,
                                   max_attempts, timeout, status, attempt, error, progress_message, worker,
                                   tokens_used, usage, created_at, queued_at, fair_key, priority, wait_reason)
            SELECT gen_random_uuid(), %s, 'k' || n, 'echo', %s, '{}', '[]', 'none', false, 3, 30,
                   'queued', 1, '', '', '', 0, '{}', now(), now() - (n || ' ms')::interval,
                   (%s::text[])[1 + n %% %s], 0, 'capacity'
            FROM generate_series(1, %s) AS n
            """,
            [job.id, QUEUE, [str(o.pk) for o in owners], len(owners), WAITING],
        )
        cursor.execute("ANALYZE jobs_task")
    return job


def rows_read(sql: str) -> int:
    """Rows the statement's scans touched, from its executed plan."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        (document,) = cursor.fetchone()
    (plan,) = json.loads(document) if isinstance(document, str) else document

    def walk(node) -> int:
        touched = 0
        if "Scan" in node["Node Type"] and node["Node Type"] not in ("CTE Scan", "WorkTable Scan"):
            loops = node.get("Actual Loops", 1)
            touched += (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * loops
        return touched + sum(walk(child) for child in node.get("Plans", ()))

    return walk(plan["Plan"])


def reads_of(func, *args, **kwargs) -> list[tuple[str, int]]:
    """Each SELECT the call sent (the start of its text), with the rows it touched; a
    list, so that two statements beginning alike are both counted."""
    with CaptureQueriesContext(connection) as ctx:
        func(*args, **kwargs)
    statements = [q["sql"] for q in ctx.captured_queries]
    return [(sql[:120], rows_read(sql)) for sql in statements if sql.lstrip().upper().startswith(("SELECT", "WITH"))]


def test_a_dispatch_and_an_admission_read_a_few_rows_with_20000_tasks_waiting(redis_flushed):
    owners = [make_user(f"backlog-{i}") for i in range(USERS)]
    job = backlog(owners)
    newcomer = Task.objects.create(job=job, key="new", agent="echo", queue=QUEUE, status="pending")

    dispatch = reads_of(dispatch_plan, [newcomer])
    assert dispatch_plan([newcomer]).send_now == set()  # the line is there: it waits behind it
    worker_admission = reads_of(tasks_admit, {QUEUE})
    # The admitted task ran: its slot is free again for the orchestrator's pass.
    assert Task.objects.filter(queue=QUEUE, sent_at__isnull=False).update(status="succeeded") == 1
    orchestrator_pass = reads_of(tasks_admit, None)
    sent = Task.objects.filter(queue=QUEUE, status="queued", sent_at__isnull=False).count()

    print(f"rows read with {WAITING} waiting: dispatch {dispatch}, admission {worker_admission}, "
          f"orchestrator's pass {orchestrator_pass}")  # fmt: skip
    assert sent == 1  # each admission sent one (no worker on the queue: a depth of one)
    for step in (dispatch, worker_admission, orchestrator_pass):
        assert step, "no statement captured"
        for sql, rows in step:
            assert rows <= MOST_ROWS_READ, f"{rows} rows read by {sql}"
