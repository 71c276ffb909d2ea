"""Soak: run jobs for a long time while workers are killed at random; nothing may be lost.

    python bench/soak.py [--duration 600] [--baseline 60] [--workers 3] [--kill-every 8]

1. Set-up: a private redis-server (port 8158, so its key count is this run's alone), the
   PostgreSQL database `agentbus_soak` (created and migrated here), one orchestrator and
   a standby, and ``--workers`` workers, started as the Procfile starts them. One more
   worker, the sentinel, is never killed: its RSS at the start and the end is the
   worker's memory growth over the run.
2. Baseline (``--baseline`` seconds): jobs are submitted through the REST API (a client
   in this process) keeping ``--in-flight`` of them unfinished; nothing is killed.
3. Chaos (the rest of ``--duration``): the same load, and every ``--kill-every`` seconds
   (on average) a random worker is SIGKILLed mid-task and a fresh one started.
4. Drain: submissions stop; every job must finish. Then it prints jobs submitted,
   succeeded, lost (not finished: must be 0), duplicated results (tasks with more than
   one committed result: must be 0), tasks left running, throughput under chaos as a
   ratio of the baseline's, the sentinel's RSS growth and Redis's key count at the start
   and the end.

Each job is a small diamond of `lab_sleep` tasks (tests/faults/agents.py) of 0.05-0.4 s.
Not run in CI; exits 1 if anything was lost or committed twice.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REDIS_PORT = int(os.environ.get("SOAK_REDIS_PORT", "8158"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_soak")
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
os.environ.setdefault("SECRET_KEY", "soak-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-0123")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("AGENTBUS_AGENT_MODULES", "tests.faults.agents")
os.environ.setdefault("AGENTBUS_QUEUES", "default,faults")
os.environ.setdefault("AGENTBUS_TASK_HEARTBEAT_TIMEOUT", "5")
os.environ.setdefault("AGENTBUS_REQUEUE_AFTER", "10")
os.environ.setdefault("AGENTBUS_RETRY_BACKOFF_BASE", "0.5")
os.environ.setdefault("AGENTBUS_RETRY_BACKOFF_MAX", "5")
os.environ.setdefault("AGENTBUS_MAX_ACTIVE_JOBS_PER_USER", "0")
os.environ.setdefault("THROTTLE_USER_RATE", "1000000/min")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")

LOGS = ROOT / "var" / "soak"


def ensure_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


class Fleet:
    """The processes of the run, started like the Procfile does."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.started = 0

    def start(self, name: str, *argv: str) -> subprocess.Popen:
        log = open(LOGS / f"{name}.log", "w")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def worker(self) -> subprocess.Popen:
        self.started += 1
        name = f"soak-w{self.started}"
        proc = self.start(name, sys.executable, "manage.py", "rqworker", "faults", "--name", name)
        self.workers.append(proc)
        return proc

    def kill_random_worker(self) -> None:
        victim = random.choice(self.workers)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.workers.remove(victim)
        self.worker()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def job_body() -> dict:
    def task(key: str, deps: list[str]) -> dict:
        return {"key": key, "agent": "lab_sleep", "input": {"seconds": round(random.uniform(0.05, 0.4), 3)},
                "depends_on": deps}  # fmt: skip

    return {"requirements": "soak", "plan": {"tasks": [task("a", []), task("b", ["a"]), task("c", ["a"]),
                                                       task("d", ["b", "c"])]}}  # fmt: skip


def run_load(client, seconds: float, in_flight: int, submitted: list[str], fleet: Fleet | None, kill_every: float):
    """Keep ``in_flight`` jobs unfinished for ``seconds``; returns jobs finished in that time."""
    from jobs.models import JOB_TERMINAL, Job

    started = time.monotonic()
    finished_before = Job.objects.filter(status__in=JOB_TERMINAL).count()
    next_kill = started + random.expovariate(1 / kill_every) if fleet else float("inf")
    while time.monotonic() - started < seconds:
        active = Job.objects.exclude(status__in=JOB_TERMINAL).count()
        for _ in range(max(0, in_flight - active)):
            response = client.post("/jobs", job_body(), format="json")
            if response.status_code != 201:
                raise SystemExit(f"submission refused: {response.status_code} {response.content[:200]}")
            submitted.append(response.json()["id"])
        if time.monotonic() >= next_kill:
            fleet.kill_random_worker()
            next_kill = time.monotonic() + random.expovariate(1 / kill_every)
        time.sleep(0.2)
    return Job.objects.filter(status__in=JOB_TERMINAL).count() - finished_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load, baseline included")
    parser.add_argument("--baseline", type=float, default=60, help="seconds of load without kills first")
    parser.add_argument("--workers", type=int, default=3, help="workers that may be killed")
    parser.add_argument("--kill-every", type=float, default=8, help="mean seconds between worker kills")
    parser.add_argument("--in-flight", type=int, default=12, help="unfinished jobs kept in the system")
    parser.add_argument("--drain", type=float, default=180, help="seconds allowed to finish after the load")
    args = parser.parse_args()

    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from accounts.models import ApiToken
    from jobs.models import JOB_TERMINAL, Job, JobEvent, Task

    LOGS.mkdir(parents=True, exist_ok=True)
    ensure_database()
    call_command("migrate", "--noinput", verbosity=0)
    Job.objects.all().delete()  # each run starts from an empty history

    fleet = Fleet()
    fleet.start("redis", "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no")  # fmt: skip
    client_redis = redis.Redis(port=REDIS_PORT)
    for _ in range(100):
        try:
            client_redis.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    try:
        from django.contrib.auth import get_user_model

        user, _ = get_user_model().objects.get_or_create(username="soak")
        _, raw = ApiToken.issue(user=user, name="soak")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")

        manage = (sys.executable, "manage.py")
        fleet.start("orchestrator-1", *manage, "orchestrate")
        fleet.start("orchestrator-2", *manage, "orchestrate")
        sentinel = fleet.start("sentinel", *manage, "rqworker", "faults", "--name", "soak-sentinel")
        for _ in range(args.workers):
            fleet.worker()
        time.sleep(8)  # let every process finish importing Django before measuring
        keys_at_start = client_redis.dbsize()
        submitted: list[str] = []

        print(f"baseline: {args.baseline:.0f} s without kills ...", file=sys.stderr)
        # A first warm-up job so the sentinel's RSS is measured warm, not half-imported.
        run_load(client, min(10.0, args.baseline), args.in_flight, submitted, None, 0)
        rss_start = rss_kib(sentinel.pid)
        t0 = time.monotonic()
        baseline_done = run_load(client, args.baseline, args.in_flight, submitted, None, 0)
        baseline_rate = baseline_done / (time.monotonic() - t0) * 60

        chaos = max(0.0, args.duration - args.baseline)
        print(f"chaos: {chaos:.0f} s, a worker killed every ~{args.kill_every:.0f} s ...", file=sys.stderr)
        t0 = time.monotonic()
        chaos_done = run_load(client, chaos, args.in_flight, submitted, fleet, args.kill_every)
        chaos_rate = chaos_done / max(time.monotonic() - t0, 1e-9) * 60
        kills = fleet.started - args.workers

        print("drain ...", file=sys.stderr)
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline:
            if Job.objects.filter(id__in=submitted).exclude(status__in=JOB_TERMINAL).count() == 0:
                break
            time.sleep(0.5)
        time.sleep(2)  # let workers and the orchestrator settle their last writes
        rss_end = rss_kib(sentinel.pid)

        statuses = Counter(Job.objects.filter(id__in=submitted).values_list("status", flat=True))
        lost = len(submitted) - sum(statuses[s] for s in JOB_TERMINAL)
        commits = Counter(
            JobEvent.objects.filter(job_id__in=submitted, type="task.status", status="succeeded").values_list(
                "task_id", flat=True
            )
        )
        duplicated = sum(1 for n in commits.values() if n > 1)
        running = Task.objects.filter(job_id__in=submitted, status__in=("queued", "running")).count()
        retried = JobEvent.objects.filter(job_id__in=submitted, type="task.retry").count()
        keys_at_end = client_redis.dbsize()
        kinds = Counter(":".join(k.decode().split(":")[:2]) for k in client_redis.scan_iter(count=1000))
    finally:
        fleet.stop()

    print(f"jobs submitted              {len(submitted)}")
    print(f"jobs succeeded              {statuses['succeeded']}")
    print(f"jobs failed                 {statuses['failed']}")
    print(f"jobs lost                   {lost}  (must be 0)")
    print(f"duplicated results          {duplicated}  (must be 0)")
    print(f"tasks left queued/running   {running}")
    print(f"workers killed              {kills}  (attempts given up and retried: {retried})")
    print(f"throughput, baseline        {baseline_rate:.1f} jobs/min")
    print(f"throughput, under kills     {chaos_rate:.1f} jobs/min  (ratio {chaos_rate / max(baseline_rate, 1e-9):.2f})")
    print(f"sentinel worker RSS         {rss_start / 1024:.1f} MiB -> {rss_end / 1024:.1f} MiB "
          f"(growth {(rss_end - rss_start) / 1024:+.1f} MiB)")  # fmt: skip
    print(f"redis keys                  {keys_at_start} at start, {keys_at_end} at end")
    print("  at end, by kind:          " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    return 0 if lost == 0 and duplicated == 0 and running == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
