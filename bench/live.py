"""Live-status latency: from an event's commit to its arrival at websocket clients.

    python bench/live.py [--events 200] [--subscribers 1,50] [--servers daphne,uvicorn]

For each ASGI server (daphne, the Procfile's; uvicorn, the alternative):
1. Start it on 127.0.0.1:BENCH_LIVE_PORT with the real Redis channel layer.
2. A child process opens S websockets to ``/ws/jobs/{id}`` (token auth) and records
   when each event arrives (time.time(), same machine clock as the publisher); the
   sockets are spread over 5 client processes so the clients are not the bottleneck.
3. This process appends E events to the job through ``jobs.events.events_append``
   (the path every state change takes: one transaction, published after commit), one
   every --interval seconds (default 50 ms, a busy job), and records the moment each
   commit returned.
4. Delay = arrival - commit, over every (subscriber, event) pair: p50, p95, max.
The run with 1 subscriber is the baseline; the 50-subscriber figures are printed with
their ratio to it. Then the servers are compared (p50 with 50 subscribers, and plain
HTTP requests per second on GET /healthz from 8 threads).

Uses PostgreSQL (DATABASE_URL, default the local `agentbus_bench_live` database, created
and migrated here) and Redis db 2 (BENCH_LIVE_REDIS_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench_live")
os.environ["REDIS_URL"] = os.environ.get("BENCH_LIVE_REDIS_URL", "redis://127.0.0.1:6379/2")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")  # plain HTTP on 127.0.0.1
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")
PORT = int(os.environ.get("BENCH_LIVE_PORT", "8125"))
CLIENT_PROCESSES = 5

SERVERS = {
    "daphne": [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(PORT), "agentbus_site.asgi:application"],
    "uvicorn": [
        sys.executable, "-m", "uvicorn", "agentbus_site.asgi:application",
        "--host", "127.0.0.1", "--port", str(PORT), "--ws", "websockets", "--lifespan", "off",
        "--log-level", "warning", "--no-access-log",
    ],
}  # fmt: skip


# --- the subscriber child process --------------------------------------------------------


async def _subscribe(url: str, token: str, count: int, events: int, timeout: float) -> list[dict]:
    from websockets.asyncio.client import connect

    arrivals: list[dict] = [{} for _ in range(count)]
    sockets = []
    for _ in range(count):
        sockets.append(await connect(url, additional_headers={"Authorization": f"Token {token}"}, proxy=None))
    print("ready", flush=True)

    async def read(i: int, socket) -> None:
        while len(arrivals[i]) < events:
            message = await socket.recv()
            arrivals[i][json.loads(message)["seq"]] = time.time()

    try:
        await asyncio.wait_for(asyncio.gather(*(read(i, s) for i, s in enumerate(sockets))), timeout)
    except TimeoutError:
        pass
    for socket in sockets:
        await socket.close()
    return arrivals


def subscriber_main(url: str, token: str, count: int, events: int) -> None:
    arrivals = asyncio.run(_subscribe(url, token, count, events, timeout=120))
    print(json.dumps(arrivals), flush=True)


# --- the publisher (this process) --------------------------------------------------------


def setup() -> tuple:
    import django

    django.setup()
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    call_command("migrate", verbosity=0, interactive=False)

    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(username="bench-live")
    _, token = ApiToken.issue(user=user, name="bench")
    return user, token


def server_start(name: str) -> subprocess.Popen:
    env = dict(os.environ)
    proc = subprocess.Popen(SERVERS[name], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{name} did not start: {proc.stderr.read().decode()[-2000:]}")


def server_stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure_delays(user, token: str, *, subscribers: int, events: int, interval: float) -> list[float]:
    from django.db import transaction

    from jobs.events import NewEvent, events_append
    from jobs.models import Job

    job = Job.objects.create(owner=user, plan={"tasks": []}, status="succeeded")
    # Sockets spread over a few client processes, so the clients are not what is measured.
    split = [
        subscribers // CLIENT_PROCESSES + (1 if i < subscribers % CLIENT_PROCESSES else 0)
        for i in range(CLIENT_PROCESSES)
    ]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                f"ws://127.0.0.1:{PORT}/ws/jobs/{job.id}",
                token,
                str(n),
                str(events),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in split
        if n
    ]
    for child in children:
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("subscribers failed to connect")
    time.sleep(0.3)  # let every socket finish its (empty) replay

    committed: dict[int, float] = {}
    for i in range(events):
        with transaction.atomic():
            (row,) = events_append(job.id, [NewEvent("bench.tick", data={"i": i})])
        committed[row.seq] = time.time()  # the commit has returned; publishing is on_commit
        time.sleep(interval)
    arrivals = []
    for child in children:
        arrivals += json.loads(child.stdout.readline())
        child.wait(30)
    delays = []
    missing = 0
    for per_socket in arrivals:
        for seq, at in committed.items():
            arrived = per_socket.get(str(seq))
            if arrived is None:
                missing += 1
            else:
                delays.append(max(0.0, arrived - at))
    if missing:
        print(f"    ! {missing} (subscriber, event) pairs never arrived")
    return delays


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)

    def p(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return p(0.50) * 1000, p(0.95) * 1000, ordered[-1] * 1000


def http_rps(seconds: float = 3.0, threads: int = 8) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def hammer(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
        while time.monotonic() < stop:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            done[i] += 1

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between events (default 0.05)")
    parser.add_argument("--subscribers", default="1,50")
    parser.add_argument("--servers", default="daphne,uvicorn")
    args = parser.parse_args()
    counts = [int(n) for n in args.subscribers.split(",")]
    user, token = setup()

    summary: dict[str, dict] = {}
    for server in args.servers.split(","):
        print(f"{server}:")
        proc = server_start(server)
        try:
            results = {}
            for count in counts:
                p50, p95, worst = percentiles(
                    measure_delays(user, token, subscribers=count, events=args.events, interval=args.interval)
                )
                results[count] = (p50, p95)
                print(
                    f"  {count:>3} subscriber(s): commit -> websocket p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  max {worst:6.2f} ms"
                )
            base, most = results[counts[0]], results[counts[-1]]
            if len(counts) > 1:
                print(
                    f"  ratio {counts[-1]} vs {counts[0]} subscriber(s): p50 x{most[0] / base[0]:.2f}  p95 x{most[1] / base[1]:.2f}"
                )
            rps = http_rps()
            print(f"  GET /healthz: {rps:,.0f} requests/s (8 threads)")
            summary[server] = {"p50": most[0], "p95": most[1], "rps": rps}
        finally:
            server_stop(proc)
    if {"daphne", "uvicorn"} <= set(summary):
        d, u = summary["daphne"], summary["uvicorn"]
        print(
            f"uvicorn vs daphne (baseline): p50 x{u['p50'] / d['p50']:.2f}, p95 x{u['p95'] / d['p95']:.2f} "
            f"with {counts[-1]} subscriber(s); HTTP x{u['rps'] / d['rps']:.2f}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        subscriber_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
