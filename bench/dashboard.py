"""What the dashboard pages cost to render, against the REST API measured in the same run.

    python bench/dashboard.py [--tasks 200] [--jobs 500] [--reps 30]

The pages are redrawn by every open browser after each event (the job page's live
regions) and every few seconds (the list), so they should cost about what the API's
JSON for the same data costs. Both go through Django's full request path in-process
(middleware, session auth, templates), without a network in between:

1. Job page: one finished job of N tasks in a chain, each with its queued, running and
   succeeded events. Baseline `GET /jobs/{id}` (the job with its tasks, JSON); measured
   `GET /app/jobs/{id}` (the whole page) and `?fragment=live` (what a redraw fetches).
2. Job list: M jobs of 4 tasks. Baseline `GET /jobs` (first page, JSON); measured
   `GET /app/?fragment=results` (first page of 25 with progress bars and status counts).

Prints p50/p95 in milliseconds and the ratio of p50s. Uses PostgreSQL
(DATABASE_URL, default the local server's `agentbus_bench_dashboard` database, created
and migrated here) and Redis db 13 (BENCH_REDIS_URL; nothing is left there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench_dashboard")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")


def ensure_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def make_data(tasks: int, jobs: int):
    """A user with one finished N-task chain and M finished 4-task jobs (fresh each run)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from jobs.models import Job, JobEvent, Task

    User = get_user_model()
    User.objects.filter(username="bench-dashboard").delete()
    user = User.objects.create_user("bench-dashboard", password="pw")
    now = timezone.now()

    def job_with_tasks(n: int, requirements: str) -> Job:
        job = Job.objects.create(
            owner=user, requirements=requirements, plan={"tasks": []}, status="succeeded",
            started_at=now, finished_at=now, result={"outputs": {}}, last_seq=3 * n,
        )  # fmt: skip
        rows = Task.objects.bulk_create(
            Task(
                job=job,
                key=f"t{i}",
                agent="echo",
                queue="default",
                status="succeeded",
                attempt=1,
                depends_on=[f"t{i - 1}"] if i else [],
                input={"i": i},
                output={"i": i, "text": "x" * 200},
                queued_at=now,
                started_at=now,
                finished_at=now,
            )
            for i in range(n)
        )
        JobEvent.objects.bulk_create(
            JobEvent(
                job=job,
                seq=3 * i + k + 1,
                type="task.status",
                task=t,
                status=s,
                data={"key": t.key, "attempt": 1},
                at=now,
            )
            for i, t in enumerate(rows)
            for k, s in enumerate(("queued", "running", "succeeded"))
        )
        return job

    big = job_with_tasks(tasks, f"a chain of {tasks} tasks")
    for j in range(jobs):
        job_with_tasks(4, f"job {j}")
    return user, big


def timed(client, url: str, reps: int, **headers) -> tuple[float, float]:
    client.get(url, **headers)  # warm caches and template loading
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        response = client.get(url, **headers)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()

    import django

    django.setup()
    ensure_database()
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import ApiToken

    call_command("migrate", "--noinput", verbosity=0)
    print(f"setting up: one job of {args.tasks} tasks, {args.jobs} jobs of 4 tasks …", flush=True)
    user, big = make_data(args.tasks, args.jobs)
    _, raw = ApiToken.issue(user=user)
    api = {"HTTP_AUTHORIZATION": f"Token {raw}"}
    browser = Client(HTTP_HOST="127.0.0.1")
    browser.force_login(user)
    rest = Client(HTTP_HOST="127.0.0.1")

    rows = [
        ("job", "GET /jobs/{id} (API, baseline)", timed(rest, f"/jobs/{big.id}", args.reps, **api)),
        ("job", "GET /app/jobs/{id} (page)", timed(browser, f"/app/jobs/{big.id}", args.reps)),
        (
            "job",
            "GET /app/jobs/{id}?fragment=live (redraw)",
            timed(browser, f"/app/jobs/{big.id}?fragment=live", args.reps),
        ),
        ("list", "GET /jobs (API, 50 a page, baseline)", timed(rest, "/jobs", args.reps, **api)),
        ("list", "GET /app/?fragment=results (25 a page)", timed(browser, "/app/?fragment=results", args.reps)),
    ]
    print(f"\n{'request':48} {'p50 ms':>8} {'p95 ms':>8} {'x baseline':>11}")
    baseline = {}
    for group, name, (p50, p95) in rows:
        if "baseline" in name:
            baseline[group] = p50
            ratio = "1.00"
        else:
            ratio = f"{p50 / baseline[group]:.2f}"
        print(f"{name:48} {p50:8.1f} {p95:8.1f} {ratio:>11}")
    print(f"\n(job page: {args.tasks} tasks, {3 * args.tasks} events; list: {args.jobs + 1} jobs, first page)")


if __name__ == "__main__":
    main()
