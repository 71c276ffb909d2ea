"""Cost of a human review gate, against the same jobs without one, measured in one run.

    python bench/reviews.py [--jobs 200] [--clients 4] [--latency-jobs 30]

The stack of bench/pipeline.py (daphne, orchestrator, one worker, as the Procfile starts
them) runs two batches of two-task jobs (a -> b, echo) submitted over REST:
1. baseline: no gate;
2. gated: ``"review": "after"`` on a, decided by a robot reviewer that listens on
   ``/ws/reviews`` (token-authenticated, like a program would) and approves each review
   over REST as soon as it is announced.
It prints jobs/s of each and their ratio (the platform's cost of a gate: opening the
review, the websocket push, the decision, the task's resumption; a human's think time
is not measured). Then, one gated job at a time (so no queue inflates them), the
latencies a reviewer feels: gate opened -> inbox message received, and decision ->
dependent task started (p50/p95).

PostgreSQL database ``agentbus_bench_reviews`` (created and migrated here) and Redis db
BENCH_REDIS_URL (default db 6, flushed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench_reviews")
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
os.environ.setdefault("BENCH_PORT", "8165")
os.environ.setdefault("AGENTBUS_MAX_ACTIVE_JOBS_PER_USER", "100000")
os.environ.setdefault("THROTTLE_USER_RATE", "1000000/min")

from bench.pipeline import (
    PORT,
    Stack,
    bench_ready,
    percentile,
    progress,
    submit_jobs,
    wait_finished,
)


class ReviewStack(Stack):
    """bench/pipeline.py's stack, logging to its own file."""

    def __init__(self) -> None:
        self.procs = []
        self.log = open(ROOT / "var" / "bench-reviews.log", "w")  # noqa: SIM115 (the processes write to it)


def body(i: int, gated: bool) -> dict:
    first = {"key": "a", "agent": "echo", "input": {"i": i}}
    if gated:
        first["review"] = "after"
    return {"plan": {"tasks": [first, {"key": "b", "agent": "echo", "depends_on": ["a"]}]}}


class RobotReviewer(threading.Thread):
    """Approves every review announced on /ws/reviews, recording when each arrived. One
    thread reads the socket (so arrival times are not delayed by decisions being made)
    and two others post the decisions."""

    def __init__(self, token: str) -> None:
        super().__init__(daemon=True)
        self.token = token
        self.arrived: dict[str, float] = {}
        self.stopped = threading.Event()
        self.connected = threading.Event()
        self.todo: queue.Queue = queue.Queue()
        self.deciders = [threading.Thread(target=self.decide, daemon=True) for _ in range(2)]

    def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        for decider in self.deciders:
            decider.start()
        with connect(
            f"ws://127.0.0.1:{PORT}/ws/reviews", additional_headers={"Authorization": f"Token {self.token}"}, proxy=None
        ) as ws:
            self.connected.set()
            while not self.stopped.is_set():
                try:
                    raw = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return  # the stack is stopping
                review = json.loads(raw)["review"]
                if review["status"] != "pending" or review["id"] in self.arrived:
                    continue
                self.arrived[review["id"]] = time.time()
                self.todo.put(review["id"])

    def decide(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        while True:
            review_id = self.todo.get()
            for attempt in range(10):  # a 5xx (say, PostgreSQL out of connections) is retried, as a client would
                conn.request("POST", f"/reviews/{review_id}/decision", json.dumps({"decision": "approve"}), headers)
                response = conn.getresponse()
                response.read()
                if response.status < 500:
                    break
                time.sleep(0.1 * 2**attempt)
            if response.status != 200:
                raise RuntimeError(f"decision failed: {response.status}")


def run_batch(token: str, n: int, clients: int, *, gated: bool, label: str) -> tuple[float, list[str]]:
    from jobs.models import Job

    started = time.perf_counter()
    ids = submit_jobs(token, [body(i, gated) for i in range(n)], clients)
    wait_finished(ids, label)
    elapsed = time.perf_counter() - started
    if Job.objects.filter(pk__in=ids).exclude(status="succeeded").exists():
        raise RuntimeError(f"{label}: some jobs did not succeed")
    return n / elapsed, ids


def run_one_at_a_time(token: str, n: int) -> list[str]:
    """Gated jobs one after another, so the latencies are the platform's, not a queue's."""
    ids = []
    for i in range(n):
        (job_id,) = submit_jobs(token, [body(i, True)], 1)
        wait_finished([job_id], "", timeout=60)
        ids.append(job_id)
        progress("one at a time", i + 1, n)
    return ids


def latencies(ids: list[str], arrived: dict[str, float]) -> tuple[list[float], list[float]]:
    from jobs.models import Review, Task

    push, resume = [], []
    starts = dict(Task.objects.filter(job_id__in=ids, key="b").values_list("job_id", "started_at"))
    for review in Review.objects.filter(job_id__in=ids).only("id", "job_id", "created_at", "decided_at"):
        if str(review.id) in arrived:
            push.append((arrived[str(review.id)] - review.created_at.timestamp()) * 1000)
        resume.append((starts[review.job_id] - review.decided_at).total_seconds() * 1000)
    return push, resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--latency-jobs", type=int, default=30)
    args = parser.parse_args()

    token = bench_ready("bench-reviewer")

    print(
        f"agentbus review-gate benchmark: {args.jobs} two-task jobs, {args.clients} REST clients, {os.cpu_count()} cores"
    )
    stack = ReviewStack()
    stack.start()
    robot = RobotReviewer(token)
    try:
        robot.start()
        robot.connected.wait(30)
        run_batch(token, min(20, args.jobs), args.clients, gated=True, label="warm-up")
        baseline, _ = run_batch(token, args.jobs, args.clients, gated=False, label="no gate")
        gated, _ = run_batch(token, args.jobs, args.clients, gated=True, label="after-gate, robot")
        push, resume = latencies(run_one_at_a_time(token, args.latency_jobs), robot.arrived)
    finally:
        robot.stopped.set()
        stack.stop()

    print()
    print(f"{'a -> b, no gate':<52}{baseline:>10.1f} jobs/s")
    print(f"{'a -> b, after-gate on a, approved over REST':<52}{gated:>10.1f} jobs/s")
    print(f"{'ratio gated / no gate':<52}{gated / baseline:>10.2f} x")
    print(f"latencies, {len(resume)} gated jobs one at a time:")
    print(
        f"{'  gate opened -> /ws/reviews message received':<52}p50 {percentile(push, 50):.1f} ms   p95 {percentile(push, 95):.1f} ms   ({len(push)})"
    )
    print(
        f"{'  decision -> dependent task started':<52}p50 {percentile(resume, 50):.1f} ms   p95 {percentile(resume, 95):.1f} ms   ({len(resume)})"
    )
    print(f"(run at {datetime.now().isoformat(timespec='seconds')})")


if __name__ == "__main__":
    main()
