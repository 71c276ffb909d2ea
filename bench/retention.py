"""Retention under load: purge N old finished jobs while the pipeline benchmark runs.

    python bench/retention.py [--history 100000] [--round 200] [--clients 4] [--pause 0.05]

1. Seed ``--history`` finished jobs, 30 days old, each with one task (input and output)
   and three events, for a user of their own (bulk inserts).
2. Start the stack (web, orchestrator, one worker) as bench/pipeline.py does, and
   `nice manage.py purge --days 7 --pause P` as a process of its own, stopped (SIGSTOP).
3. Alternate rounds of ``--round`` single-task echo jobs submitted over REST: a baseline
   round with the purge stopped, then a round with it running (SIGCONT), and so on until
   the purge has finished. Alternating cancels the drift of a shared machine; a round in
   which the purge ended part-way is left out.
4. Print the pipeline's rate in both kinds of round and their ratio (the aim: >= 0.90,
   i.e. slowed by at most 10%), the purge's own rate, and the tables' and indexes' sizes
   and row counts before, after the purge, and after a plain VACUUM (which makes the freed
   space reusable; only VACUUM FULL gives it back to the file system, under an exclusive lock).

Uses DATABASE_URL (default the local `agentbus_bench` database) and BENCH_REDIS_URL
(default Redis db 14), as bench/pipeline.py; both are emptied first.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import Stack, bench_ready, progress, submit_jobs

TABLES = ("jobs_job", "jobs_task", "jobs_jobevent")


def seed_history(n: int, chunk: int = 5000) -> None:
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from jobs.models import Job, JobEvent, Task

    owner, _ = get_user_model().objects.get_or_create(username="history")
    old = timezone.now() - timedelta(days=30)
    text = "lorem ipsum dolor sit amet " * 8
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        jobs = [
            Job(
                owner=owner, requirements=f"history {start + i}", status="succeeded", last_seq=3, advanced_seq=3,
                plan={"tasks": [{"key": "only", "agent": "echo", "input": {"text": text}}]},
                result={"outputs": {"only": {"text": text}}}, started_at=old, finished_at=old,
            )
            for i in range(size)
        ]  # fmt: skip
        Job.objects.bulk_create(jobs)
        Job.objects.filter(pk__in=[j.pk for j in jobs]).update(created_at=old)
        tasks = [
            Task(job=j, key="only", agent="echo", queue="default", input={"text": text}, output={"text": text},
                 status="succeeded", attempt=1, started_at=old, finished_at=old)
            for j in jobs
        ]  # fmt: skip
        Task.objects.bulk_create(tasks)
        events = [
            JobEvent(job=j, seq=s, type=kind, task=t if kind == "task.status" else None, status=st, data={"n": s}, at=old)
            for j, t in zip(jobs, tasks, strict=True)
            for s, kind, st in ((1, "job.status", "submitted"), (2, "task.status", "succeeded"), (3, "job.status", "succeeded"))
        ]  # fmt: skip
        JobEvent.objects.bulk_create(events)
        progress("seeding history", start + size, n)


def sizes() -> dict:
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                f"SELECT pg_relation_size(%s), pg_indexes_size(%s), pg_total_relation_size(%s), count(*) FROM {table}",
                [table, table, table],
            )
            out[table] = cursor.fetchone()
    return out


def history_left() -> tuple[int, int]:
    """The seeded jobs' event rows and task outputs still stored (0, 0 once purged)."""
    from jobs.models import JobEvent, Task

    return (
        JobEvent.objects.filter(job__owner__username="history").count(),
        Task.objects.filter(job__owner__username="history", output__isnull=False).count(),
    )


def print_sizes(label: str, measured: dict) -> None:
    mib = 1024 * 1024
    print(label)
    print(f"  {'table':<16}{'rows':>10}{'heap MiB':>10}{'index MiB':>11}{'total MiB':>11}")
    for table, (heap, index, total, rows) in measured.items():
        print(f"  {table:<16}{rows:>10}{heap / mib:>10.1f}{index / mib:>11.1f}{total / mib:>11.1f}")


def vacuum() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"VACUUM {table}")


def round_rate(token: str, n: int, clients: int, offset: int) -> float:
    bodies = [{"plan": {"tasks": [{"key": "only", "agent": "echo", "input": {"i": offset + i}}]}} for i in range(n)]
    started = time.perf_counter()
    ids = submit_jobs(token, bodies, clients)
    from jobs.models import Job

    while Job.objects.filter(pk__in=ids, status__in=["succeeded", "failed"]).count() < n:
        time.sleep(0.05)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--round", type=int, default=200, help="Jobs per round.")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.5, help="The purge's sleep between batches (seconds).")
    parser.add_argument("--max-rounds", type=int, default=400, help="At 100k jobs the purge needs about 130-250.")
    args = parser.parse_args()

    token = bench_ready("bench")
    print(f"retention benchmark: {args.history} finished jobs purged while echo jobs run ({os.cpu_count()} cores)")
    seed_history(args.history)
    before = sizes()

    stack = Stack()
    stack.start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    purge = None
    base_rates: list[float] = []
    purge_rates: list[float] = []
    try:
        round_rate(token, 50, args.clients, offset=0)  # warm-up
        purge = subprocess.Popen(
            # At a lower CPU priority, as an operator would run a backlog's purge.
            ["nice", "-n", "10", sys.executable, "manage.py", "purge", "--days", "7", "--pause", str(args.pause)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        purge.send_signal(signal.SIGSTOP)
        purge_seconds = 0.0
        offset = 50
        for i in range(args.max_rounds):
            base_rates.append(round_rate(token, args.round, args.clients, offset))
            offset += args.round
            purge.send_signal(signal.SIGCONT)
            started = time.perf_counter()
            rate = round_rate(token, args.round, args.clients, offset)
            offset += args.round
            if purge.poll() is not None:
                purge_seconds += time.perf_counter() - started  # ended part-way: left out
                break
            purge.send_signal(signal.SIGSTOP)
            purge_seconds += time.perf_counter() - started
            purge_rates.append(rate)
            progress("rounds (purge running)", i + 1, i + 1)
        else:
            purge.send_signal(signal.SIGCONT)
        purge_output = purge.communicate(timeout=3600)[0]
    finally:
        if purge is not None and purge.poll() is None:
            purge.send_signal(signal.SIGCONT)
            purge.terminate()
        stack.stop()

    after = sizes()
    events_left, outputs_left = history_left()
    vacuum()
    vacuumed = sizes()
    base, loaded = statistics.median(base_rates), statistics.median(purge_rates) if purge_rates else float("nan")
    print()
    print(f"{'pipeline, purge stopped (median of rounds)':<48}{base:>10.1f} jobs/s   ({len(base_rates)} rounds)")
    print(f"{'pipeline, purge running (median of rounds)':<48}{loaded:>10.1f} jobs/s   ({len(purge_rates)} rounds)")
    print(f"{'ratio running / stopped':<48}{loaded / base:>10.2f} x   (aim >= 0.90)")
    print(f"{'purge':<48}{args.history / purge_seconds:>10.0f} jobs/s   ({purge_seconds:.0f} s running)")
    print(f"  {purge_output.strip()}")
    print(f"  the seeded jobs' events left: {events_left}, task outputs left: {outputs_left}")
    print("  (the rows after the purge are the benchmark's own jobs, run meanwhile)")
    print()
    print_sizes("before the purge", before)
    print_sizes("after the purge", after)
    print_sizes("after VACUUM", vacuumed)


if __name__ == "__main__":
    main()
