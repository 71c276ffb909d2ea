"""Pipeline throughput, hand-off latency and scale-out, against raw RQ in the same run.

    python bench/pipeline.py [--jobs 1000] [--chains 200] [--clients 4] [--workers 16] [--no-scheduling]

With --no-scheduling the processes run with AGENTBUS_SCHEDULING=0 (every ready task sent
at once, first in first out), to compare the cost of the scheduling policy.

1. Baseline: raw RQ. One SimpleWorker process runs N no-op jobs (JSON serializer)
   enqueued by a client thread; throughput = N / (first enqueue -> last job finished).
2. agentbus: web (uvicorn), orchestrator and one worker run as separate processes, as
   the Procfile starts them. N single-task echo jobs are submitted over REST by a few
   client threads; throughput = N / (first submit -> last job succeeded). Also the CPU
   (user + system, from /proc) each kind of process spent per job in this step: the web
   process, the worker, PostgreSQL, Redis, the orchestrator and this client, against the
   cores x wall time there was: what holds the throughput back on this machine.
3. Hand-off: chains of two echo tasks (a -> b) run one at a time; the latency is b's
   start minus a's finish (both timestamps written by the worker), p50 and p95.
4. Under load, with W workers (16): 12 chains of six 0.3 s tasks in flight at once (so
   no task waits for a free worker), the same hand-off latency.
5. Makespan: W workers run 20*W single-task jobs of a 0.5 s I/O-bound agent submitted
   over REST; the ideal is jobs * 0.5 s / W, and the figure is ideal / measured.
6. The orchestrator's CPU time (user + system, from /proc) over steps 2-5, per task run.

Uses PostgreSQL (DATABASE_URL, default the local server's `agentbus_bench` database,
created and migrated here) and Redis db 14 (BENCH_REDIS_URL), which it flushes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")  # plain HTTP on 127.0.0.1
os.environ.setdefault("LOG_LEVEL", "WARNING")
# The benchmark is one user submitting as fast as it can: lift the per-user limits.
os.environ.setdefault("AGENTBUS_MAX_ACTIVE_JOBS_PER_USER", "0")
os.environ.setdefault("THROTTLE_USER_RATE", "1000000/min")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")
PORT = int(os.environ.get("BENCH_PORT", "8190"))


def noop() -> None:
    """The baseline's job body."""


def ensure_database() -> None:
    import psycopg
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def bench_ready(username: str) -> str:
    """Set up Django on the benchmark database, migrated and emptied of jobs, with Redis
    flushed; returns an API token for ``username`` (created if need be)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import ApiToken
    from core.redis import redis_client

    ensure_database()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job CASCADE")
    redis_client().flushdb()
    user, _ = get_user_model().objects.get_or_create(username=username)
    _, token = ApiToken.issue(user=user, name="bench")
    return token


def progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r  {label:<22} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def bench_raw_rq(n: int) -> float:
    from rq import Queue, Worker
    from rq.serializers import JSONSerializer

    from core.redis import redis_client

    redis = redis_client()
    redis.flushdb()
    queue = Queue("bench", connection=redis, serializer=JSONSerializer)
    worker = subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "bench", "--url", os.environ["REDIS_URL"], "-w",
         "rq.worker.SimpleWorker", "--serializer", "rq.serializers.JSONSerializer", "-q"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.time() + 30
        while not Worker.all(connection=redis) and time.time() < deadline:
            time.sleep(0.05)
        started = time.perf_counter()
        jobs = [queue.enqueue("bench.pipeline.noop", result_ttl=60) for _ in range(n)]
        last = jobs[-1]
        while last.get_status(refresh=True) != "finished":
            progress("raw RQ", n - len(queue), n)
            time.sleep(0.01)
        progress("raw RQ", n, n)
        return n / (time.perf_counter() - started)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)


class Stack:
    """web, orchestrator and ``workers`` workers, started like the Procfile does."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.procs: list[subprocess.Popen] = []
        (ROOT / "var").mkdir(exist_ok=True)  # a fresh clone has none until `make run`
        self.log = open(ROOT / "var" / "bench-pipeline.log", "a")  # noqa: SIM115 (closed in stop())

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # As the Procfile's web line; workers as quiet as the baseline's (-q).
        web = ["uvicorn", "agentbus_site.asgi:application", "--host", "127.0.0.1", "--port", str(PORT)]
        web += ["--ws", "websockets", "--lifespan", "off", "--no-access-log"]
        commands = [
            [str(Path(sys.executable).parent / web[0]), *web[1:]],
            [sys.executable, "manage.py", "orchestrate"],
        ]
        commands += [[sys.executable, "manage.py", "rqworker", "default", "--verbosity", "0"]] * self.workers
        for argv in commands:
            self.procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT))
        self.orchestrator = self.procs[1]
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        from rq import Worker

        from core.redis import redis_client

        while len(Worker.all(connection=redis_client())) < self.workers and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # the orchestrator finishes starting

    def orchestrator_cpu(self) -> float:
        """Seconds of CPU (user + system) the orchestrator has used so far."""
        return process_cpu(self.orchestrator.pid)

    def cpu_by_process(self) -> dict[str, float]:
        """Seconds of CPU used so far by each kind of process on this machine: the stack's,
        PostgreSQL's and Redis's (all of them: nothing else should run), and this one's."""
        return {
            "web": sum(process_cpu(pid) for pid in [self.procs[0].pid, *children(self.procs[0].pid)]),
            "worker": sum(process_cpu(p.pid) for p in self.procs[2:]),
            "PostgreSQL": sum(process_cpu(pid) for pid in pids_named("postgres")),
            "Redis": sum(process_cpu(pid) for pid in pids_named("redis-server")),
            "orchestrator": self.orchestrator_cpu(),
            "benchmark": process_cpu(os.getpid()),
        }

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (uvicorn's worker processes under its supervisor)."""
    return _pids_where("stat", lambda stat: int(stat.rsplit(")", 1)[1].split()[1]) == pid)


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (as /proc/<pid>/comm has it)."""
    return _pids_where("comm", lambda comm: comm.strip() == name)


def _pids_where(field: str, match) -> list[int]:
    """Processes whose /proc/<pid>/<field> text ``match`` accepts (gone ones skipped)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if match((entry / field).read_text()):
                    pids.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return pids


def submit_jobs(token: str, bodies: list[dict], clients: int) -> list[str]:
    ids: list[str] = [""] * len(bodies)
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    done = [0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            conn.request("POST", "/jobs", json.dumps(bodies[i]), headers)
            response = conn.getresponse()
            payload = json.loads(response.read())
            if response.status != 201:
                raise RuntimeError(f"submit failed: {response.status} {payload}")
            ids[i] = payload["id"]
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids


def wait_finished(job_ids: list[str], label: str, timeout: float = 600) -> None:
    from jobs.models import Job

    deadline = time.time() + timeout
    pending = set(job_ids)
    total = len(job_ids)
    while pending and time.time() < deadline:
        finished = {
            str(i)
            for i in Job.objects.filter(pk__in=list(pending), status__in=["succeeded", "failed"]).values_list(
                "id", flat=True
            )
        }
        pending -= finished
        progress(label, total - len(pending), total)
        if pending:
            time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{len(pending)} jobs did not finish")


def bench_agentbus(token: str, n: int, clients: int) -> tuple[float, float]:
    from jobs.models import Job

    bodies = [{"plan": {"tasks": [{"key": "only", "agent": "echo", "input": {"i": i}}]}} for i in range(n)]
    started = time.perf_counter()
    submitter = threading.Thread(target=lambda: ids.extend(submit_jobs(token, bodies, clients)))
    ids: list[str] = []
    submitter.start()
    submitter.join()
    submitted = time.perf_counter() - started
    wait_finished(ids, "agentbus jobs")
    elapsed = time.perf_counter() - started
    failed = Job.objects.filter(pk__in=ids).exclude(status="succeeded").count()
    if failed:
        raise RuntimeError(f"{failed} jobs did not succeed")
    return n / elapsed, n / submitted


def bench_handoff(token: str, chains: int) -> list[float]:
    from jobs.models import Task

    latencies = []
    body = {"plan": {"tasks": [{"key": "a", "agent": "echo"}, {"key": "b", "agent": "echo", "depends_on": ["a"]}]}}
    for i in range(chains):
        (job_id,) = submit_jobs(token, [body], 1)
        wait_finished([job_id], "", timeout=30)
        a, b = Task.objects.filter(job_id=job_id).order_by("key")
        latencies.append((b.started_at - a.finished_at).total_seconds() * 1000)
        progress("hand-off chains", i + 1, chains)
    return latencies


def handoffs(job_ids: list[str]) -> list[float]:
    """Each task's start minus the finish of the dependency it waited for last, in ms."""
    from jobs.models import Task

    latencies = []
    for job_id in job_ids:
        tasks = {t.key: t for t in Task.objects.filter(job_id=job_id)}
        for task in tasks.values():
            if task.depends_on:
                ready = max(tasks[d].finished_at for d in task.depends_on)
                latencies.append((task.started_at - ready).total_seconds() * 1000)
    return latencies


def bench_handoff_under_load(token: str, chains: int, length: int, seconds: float) -> list[float]:
    tasks = [{"key": "t0", "agent": "sleep", "input": {"seconds": seconds}}]
    tasks += [
        {"key": f"t{i}", "agent": "sleep", "input": {"seconds": seconds}, "depends_on": [f"t{i - 1}"]}
        for i in range(1, length)
    ]
    ids = submit_jobs(token, [{"plan": {"tasks": tasks}}] * chains, chains)
    wait_finished(ids, "chains in flight", timeout=120)
    return handoffs(ids)


def bench_makespan(token: str, jobs: int, seconds: float, workers: int, clients: int) -> tuple[float, float]:
    from django.db.models import Max

    from jobs.models import Job

    bodies = [{"plan": {"tasks": [{"key": "io", "agent": "sleep", "input": {"seconds": seconds}}]}}] * jobs
    started = time.time()
    ids = submit_jobs(token, bodies, clients)
    wait_finished(ids, "I/O-bound jobs", timeout=300)
    last = Job.objects.filter(pk__in=ids).aggregate(last=Max("finished_at"))["last"].timestamp()
    return last - started, jobs * seconds / workers


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=16, help="workers for the load and makespan runs")
    parser.add_argument("--no-scheduling", action="store_true", help="run with AGENTBUS_SCHEDULING=0")
    args = parser.parse_args()
    os.environ["AGENTBUS_SCHEDULING"] = "0" if args.no_scheduling else "1"

    token = bench_ready("bench")

    print(
        f"agentbus pipeline benchmark: {args.jobs} jobs, {args.clients} REST clients, {os.cpu_count()} cores, "
        f"scheduling {'off' if args.no_scheduling else 'on'}"
    )
    rq_rate = bench_raw_rq(args.jobs)

    from core.redis import redis_client

    redis_client().flushdb()
    from jobs.models import Task

    stack = Stack()
    stack.start()
    try:
        bench_agentbus(token, min(50, args.jobs), args.clients)  # warm-up
        tasks_before, cpu_before = Task.objects.count(), stack.orchestrator_cpu()
        spent_before, started = stack.cpu_by_process(), time.perf_counter()
        ours, submit_rate = bench_agentbus(token, args.jobs, args.clients)
        wall = time.perf_counter() - started
        spent = {k: v - spent_before[k] for k, v in stack.cpu_by_process().items()}
        latencies = bench_handoff(token, args.chains)
        cpu = stack.orchestrator_cpu() - cpu_before
    finally:
        stack.stop()

    redis_client().flushdb()
    stack = Stack(workers=args.workers)
    stack.start()
    try:
        bench_handoff_under_load(token, 2, 2, 0.05)  # warm-up: every worker connects
        cpu_before = stack.orchestrator_cpu()
        loaded = bench_handoff_under_load(token, 12, 6, 0.3)
        makespan, ideal = bench_makespan(token, 20 * args.workers, 0.5, args.workers, args.clients)
        cpu += stack.orchestrator_cpu() - cpu_before
    finally:
        stack.stop()
    tasks_run = Task.objects.count() - tasks_before - 4  # less the warm-up's

    print()
    print(f"{'raw RQ, no-op jobs, 1 SimpleWorker':<48}{rq_rate:>10.1f} jobs/s")
    print(f"{'agentbus, echo jobs over REST, 1 worker':<48}{ours:>10.1f} jobs/s")
    print(f"{'  (REST submissions alone)':<48}{submit_rate:>10.1f} jobs/s")
    print(f"{'ratio agentbus / raw RQ':<48}{ours / rq_rate:>10.2f} x")
    # Where the throughput run's CPU went: what limits it on this machine.
    print(
        "  CPU per job: "
        + ", ".join(f"{name} {seconds / args.jobs * 1000:.2f} ms" for name, seconds in spent.items())
        + f"; {sum(spent.values()):.1f} s of {os.cpu_count() * wall:.1f} s ({os.cpu_count()} cores x {wall:.1f} s)"
    )
    print(
        f"{'hand-off, dependency done -> dependent starts':<48}"
        f"p50 {percentile(latencies, 50):.1f} ms   p95 {percentile(latencies, 95):.1f} ms   ({len(latencies)} chains)"
    )
    print(
        f"{f'hand-off, 12 chains of 0.3 s tasks, {args.workers} workers':<48}"
        f"p50 {percentile(loaded, 50):.1f} ms   p95 {percentile(loaded, 95):.1f} ms   ({len(loaded)} hand-offs)"
    )
    print(
        f"{f'{20 * args.workers} jobs of 0.5 s on {args.workers} workers':<48}"
        f"{ideal / makespan:>10.2f} of ideal   ({makespan:.2f} s, ideal {ideal:.2f} s)"
    )
    print(f"{'orchestrator CPU per task':<48}{cpu / tasks_run * 1000:>10.3f} ms   ({cpu:.2f} s over {tasks_run} tasks)")


if __name__ == "__main__":
    main()
