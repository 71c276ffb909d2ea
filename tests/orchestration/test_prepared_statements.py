"""Prepared statements (DB_PREPARED_STATEMENTS, on by default) and a migration that runs
while processes are up: the lifecycle's hand-written statements name their columns, so a
column added under a live worker does not break its claims or a cancel."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from jobs.lifecycle import job_cancel, task_claim
from jobs.models import Job, Task
from jobs.services import job_submit
from tests.conftest import make_user, plan

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(change: str) -> None:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as other:
        other.execute(f"ALTER TABLE jobs_task {change}")
        other.execute(f"ALTER TABLE jobs_job {change}")


def one_task_job(owner) -> Task:
    job, _ = job_submit(owner=owner, spec={"plan": plan({"key": "a", "agent": "unserved_echo"})})
    return Task.objects.get(job=job)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_a_column_added_while_the_process_runs_does_not_break_its_prepared_claim_and_cancel():
    owner = make_user("prepared")
    assert connection.settings_dict["OPTIONS"].get("prepare_threshold") is not None, "prepared statements are off"
    # More uses than the prepare threshold (5): the statements are now prepared on this connection.
    for _ in range(7):
        task = one_task_job(owner)
        assert task_claim(task_id=str(task.id), attempt=1, worker="w") is not None
        job_cancel(job_id=task.job_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["WITH j AS (SELECT j.*%"]
        )
        assert cursor.fetchone()[0] == 1, "the claim was not prepared on this connection"
    # The migration runs in another process (psycopg forgets its own prepared statements
    # when it sees DDL on the same connection, which would hide the failure).
    migrate("ADD COLUMN added_by_a_migration integer")
    try:
        task = one_task_job(owner)
        claimed = task_claim(task_id=str(task.id), attempt=1, worker="w")
        assert claimed is not None and claimed.status == "running"
        assert job_cancel(job_id=task.job_id).status == "cancelled"
    finally:
        migrate("DROP COLUMN added_by_a_migration")
    assert Job.objects.filter(owner=owner, status="cancelled").count() == 8
