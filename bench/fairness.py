"""Fair shares and priority under a flood, on the processes the Procfile starts.

    python bench/fairness.py [--flood 2000] [--others 20] [--workers 8] [--seconds 0.2]

1. Baseline, user B alone: B submits 20 single-task jobs of a 0.2 s agent over REST at
   once (4 clients: more jobs than workers, so B's own jobs queue behind each other);
   B's wait is each task's start minus its job's submission.
2. Baseline, user A alone: A submits 2,000 such jobs (4 REST clients); A's throughput is
   2,000 / (first submission -> last job finished).
3. Both: A submits 2,000, then B submits 20 (as in 1) while A's run; B's p95 wait
   against step 1's (aim: at most 2x), A's throughput against step 2's (aim: at most 10%
   less).
4. Priority: 1,000 priority-0 jobs fill the workers and the line; then one priority-10
   job. Its start minus the first moment a worker freed up after its submission (aim:
   within one task duration).

Uses the pipeline benchmark's database and Redis (bench/pipeline.py); 8 workers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import Stack, bench_ready, percentile, submit_jobs, wait_finished


def body(seconds: float, priority: int = 0) -> dict:
    return {"plan": {"tasks": [{"key": "t", "agent": "sleep", "input": {"seconds": seconds}}]}, "priority": priority}


def waits(job_ids: list[str]) -> list[float]:
    """Each job's wait: its task's start minus the job's submission, in seconds."""
    from jobs.models import Task

    rows = Task.objects.filter(job_id__in=job_ids).select_related("job").only("started_at", "job__created_at")
    return [(t.started_at - t.job.created_at).total_seconds() for t in rows]


def throughput(job_ids: list[str], started: float) -> float:
    from django.db.models import Max

    from jobs.models import Job

    last = Job.objects.filter(pk__in=job_ids).aggregate(last=Max("finished_at"))["last"].timestamp()
    return len(job_ids) / (last - started)


def newcomer(token: str, n: int, seconds: float) -> list[str]:
    """B's jobs, a burst from four clients."""
    return submit_jobs(token, [body(seconds)] * n, 4)


def flood(token: str, n: int, seconds: float, clients: int = 4, priority: int = 0) -> tuple[list[str], float]:
    started = time.time()
    return submit_jobs(token, [body(seconds, priority)] * n, clients), started


def clear() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job CASCADE")


def priority_delay(token: str, backlog: int, seconds: float, workers: int) -> float:
    """Seconds from the first worker freeing up after the priority job's submission to
    its start (step 4)."""
    from jobs.models import Task

    ids, _ = flood(token, backlog, seconds)
    # Wait for a steady state: every worker busy, the rest of the backlog waiting.
    deadline = time.time() + 60
    while Task.objects.filter(job_id__in=ids, status="running").count() < workers and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(4 * seconds)
    (urgent,) = submit_jobs(token, [body(seconds, priority=10)], 1)
    wait_finished([urgent], "priority-10 job", timeout=120)
    task = Task.objects.get(job_id=urgent)
    freed = (
        Task.objects.filter(job_id__in=ids, finished_at__gt=task.job.created_at)
        .order_by("finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    # A worker already free at the submission (the backlog ran out): measured from then.
    return (task.started_at - max(freed or task.job.created_at, task.job.created_at)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flood", type=int, default=2000)
    parser.add_argument("--others", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.2, help="the agent's task duration")
    args = parser.parse_args()

    token_a = bench_ready("user-a")
    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken

    user_b, _ = get_user_model().objects.get_or_create(username="user-b")
    _, token_b = ApiToken.issue(user=user_b, name="bench")
    print(
        f"agentbus fairness benchmark: {args.flood} jobs of user A, {args.others} of user B, "
        f"{args.seconds} s tasks, {args.workers} workers, {os.cpu_count()} cores"
    )
    stack = Stack(workers=args.workers)
    stack.start()
    try:
        wait_finished(newcomer(token_b, args.workers, 0.01), "warm-up")
        clear()

        alone_ids = newcomer(token_b, args.others, args.seconds)
        wait_finished(alone_ids, "B alone")
        b_alone = waits(alone_ids)
        clear()

        a_ids, a_started = flood(token_a, args.flood, args.seconds)
        wait_finished(a_ids, "A alone", timeout=900)
        a_alone = throughput(a_ids, a_started)
        clear()

        result: dict = {}
        a_thread = threading.Thread(target=lambda: result.update(a=flood(token_a, args.flood, args.seconds)))
        a_thread.start()
        a_thread.join()  # A has submitted all of its jobs; many wait
        a_ids, a_started = result["a"]
        both_ids = newcomer(token_b, args.others, args.seconds)
        wait_finished(both_ids, "B behind A's flood")
        b_both = waits(both_ids)
        wait_finished(a_ids, "A with B", timeout=900)
        a_both = throughput(a_ids, a_started)
        clear()

        delay = priority_delay(token_a, args.flood // 2, args.seconds, args.workers)
        clear()
    finally:
        stack.stop()

    b_alone_p95, b_both_p95 = percentile(b_alone, 95), percentile(b_both, 95)
    print()
    print(f"{'B alone, wait p50 / p95':<52}{statistics.median(b_alone):8.3f} s {b_alone_p95:8.3f} s")
    print(f"{'B behind A flood, wait p50 / p95':<52}{statistics.median(b_both):8.3f} s {b_both_p95:8.3f} s")
    print(f"{'ratio B p95 behind the flood / alone (aim <= 2)':<52}{b_both_p95 / b_alone_p95:8.2f} x")
    print(f"{'A alone, throughput':<52}{a_alone:8.1f} jobs/s")
    print(f"{'A with B, throughput':<52}{a_both:8.1f} jobs/s")
    print(f"{'A throughput drop (aim <= 10%)':<52}{(1 - a_both / a_alone) * 100:8.1f} %")
    print(
        f"{f'priority 10 behind {args.flood // 2} priority 0: start - worker free':<52}{delay:8.3f} s"
        f"   (aim <= one task, {args.seconds} s)"
    )


if __name__ == "__main__":
    main()
