"""Streaming: time to first token through agentbus, and per-chunk delay to many watchers.

    python bench/streaming.py [--runs 10] [--chunks 100] [--interval 0.02] [--subscribers 50]

A scripted OpenAI-compatible server (tests/workers/servers.py: real SSE, one chunk per
write) runs in this process; web (uvicorn), orchestrator and one worker run as the
Procfile starts them, with an LLM agent pointed at that server.

1. Time to first token (TTFT). Baseline: the ``openai`` client (what the worker uses)
   calls the server directly with ``stream=True``; TTFT = call -> first text chunk read.
   Through agentbus: ``POST /jobs`` of one task of that agent, then ``GET
   /jobs/{id}/stream`` (SSE) or the job's websocket with ``?stream=1``; TTFT = just
   before the POST -> the first ``task.delta`` read. Same server, same wait before its
   first chunk (--ttft, 50 ms), runs interleaved; the figure is the difference of the
   medians (aim: at most 20 ms). It includes submitting the job, dispatching it,
   the worker's claim and the reader's connection, all on this machine's 2 cores.
2. Per-chunk delay. One job streams --chunks chunks, one every --interval seconds, to S
   watchers (spread over 5 client processes, connected before the first chunk is sent:
   the server holds its answer until they are); delay = the watcher reading a chunk -
   the server writing it (time.time(), one machine clock), over every (watcher, chunk):
   p50, p95, max, for 1 and for S websocket watchers and S SSE watchers. The baseline
   is the direct client's delay for the same chunks (aim: p95 at most 50 ms with 50).

Uses PostgreSQL (DATABASE_URL, default the local `agentbus_bench_stream` database, created
and migrated here) and Redis db 12 (BENCH_STREAM_REDIS_URL), which it flushes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench_stream")
# bench.pipeline reads these when imported: this benchmark's own database, Redis db and port.
os.environ["BENCH_REDIS_URL"] = os.environ.get("BENCH_STREAM_REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ["BENCH_PORT"] = os.environ.get("BENCH_STREAM_PORT", "8437")
# 50 websockets of one user: above the default per-user limit of 20.
os.environ.setdefault("AGENTBUS_WS_MAX_PER_USER", "1000")
LLM_PORT = int(os.environ.get("BENCH_STREAM_LLM_PORT", "8438"))
CLIENT_PROCESSES = 5

from bench.pipeline import PORT, Stack, bench_ready, progress

BASE = f"http://127.0.0.1:{PORT}"
# How long each POST /jobs of the TTFT runs took to answer (ms): the part of the extra
# time spent before the worker even has the task.
SUBMIT_TIMES: list[float] = []
# When the worker wrote the first chunk, after the POST began; and from there to the reader (ms).
WRITTEN_AFTER: list[float] = []
RELAY_TIMES: list[float] = []
# When the worker's request reached the LLM server, after the POST began (ms).
REQUESTED_AFTER: list[float] = []
# When the submission dispatched the task (its queued_at, inside the POST's transaction)
# and when a worker claimed it (started_at), after the POST began (ms).
QUEUED_AFTER: list[float] = []
CLAIMED_AFTER: list[float] = []


# --- the watcher child process -------------------------------------------------------------


async def _watch(transport: str, job_id: str, token: str, count: int, chunks: int, timeout: float) -> list[dict]:
    """Open ``count`` watchers of the job's stream; each records when it read chunk i."""
    import httpx
    from websockets.asyncio.client import connect

    arrivals: list[dict] = [{} for _ in range(count)]
    headers = {"Authorization": f"Token {token}"}

    async def over_ws(i: int, ready: asyncio.Event) -> None:
        url = f"ws://127.0.0.1:{PORT}/ws/jobs/{job_id}?stream=1"
        async with connect(url, additional_headers=headers, proxy=None) as socket:
            ready.set()
            while len(arrivals[i]) < chunks:
                message = json.loads(await socket.recv())
                if message.get("type") == "task.delta":
                    arrivals[i][message["text"].split()[0]] = time.time()

    async def over_sse(i: int, ready: asyncio.Event, client) -> None:
        async with client.stream("GET", f"{BASE}/jobs/{job_id}/stream", headers=headers) as response:
            ready.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("type") == "task.delta":
                        arrivals[i][message["text"].split()[0]] = time.time()
                        if len(arrivals[i]) >= chunks:
                            return

    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=count + 5)) as client:
        readies = [asyncio.Event() for _ in range(count)]
        tasks = [
            asyncio.create_task(over_ws(i, readies[i]) if transport == "ws" else over_sse(i, readies[i], client))
            for i in range(count)
        ]
        await asyncio.gather(*(r.wait() for r in readies))
        print("ready", flush=True)
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        except TimeoutError:
            pass
    return arrivals


def watcher_main(transport: str, job_id: str, token: str, count: int, chunks: int) -> None:
    arrivals = asyncio.run(_watch(transport, job_id, token, count, chunks, timeout=120))
    print(json.dumps(arrivals), flush=True)


# --- this process: the server, the direct client, the runs --------------------------------


class Gate:
    """The scripted server's answers: each waits until its gate opens (the watchers are
    connected), then streams; every answer is kept to read its send times."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.replies: list = []
        self.arrived: list[float] = []  # when each request reached the server (time.time())
        self.plan = ([], 0.0, 0.0)  # pieces, wait before the first, interval

    def script(self, number: int, body: dict):
        from tests.workers.servers import chat_stream

        self.arrived.append(time.time())
        pieces, first, interval = self.plan
        self.open.wait(60)
        reply = chat_stream(pieces, delay=interval, first_delay=first)
        self.replies.append(reply)
        return 200, reply


def pieces_of(n: int) -> list[str]:
    return [f"c{i} " for i in range(n)]


def direct_ttft(client, model: str) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                ttft = time.perf_counter() - started
                break
        for _ in stream:  # read to the end, as the worker does
            pass
    return ttft


def agentbus_ttft(token: str, transport: str, gate: Gate) -> float:
    """Submit, follow, return the time to the first token read (s); also records where
    the time went (SUBMIT_TIMES, WRITTEN_AFTER, RELAY_TIMES), from the entry id's clock."""
    import httpx
    from websockets.sync.client import connect

    headers = {"Authorization": f"Token {token}"}
    body = {"requirements": "bench", "plan": {"tasks": [{"key": "t", "agent": "bench-llm"}]}}
    with httpx.Client(base_url=BASE, headers=headers, timeout=30) as client:
        client.get("/healthz")  # an open connection, as a client that already talks to us
        wall = time.time()
        started = time.perf_counter()
        job_id = client.post("/jobs", json=body).json()["id"]
        SUBMIT_TIMES.append((time.perf_counter() - started) * 1000)
        if transport == "sse":
            with client.stream("GET", f"/jobs/{job_id}/stream") as response:
                for line in response.iter_lines():
                    if line.startswith("data:") and json.loads(line[5:]).get("type") == "task.delta":
                        ttft, first = time.perf_counter() - started, json.loads(line[5:])
                        break
        else:
            url = f"ws://127.0.0.1:{PORT}/ws/jobs/{job_id}?stream=1"
            with connect(url, additional_headers=headers, proxy=None) as socket:
                while (first := json.loads(socket.recv(timeout=30))).get("type") != "task.delta":
                    pass
                ttft = time.perf_counter() - started
    # The entry id is the worker's XADD time in ms (Redis' clock, this machine's).
    written = int(first["id"].split("-")[0]) / 1000
    WRITTEN_AFTER.append((written - wall) * 1000)
    REQUESTED_AFTER.append((gate.arrived[-1] - wall) * 1000)
    RELAY_TIMES.append((wall + ttft - written) * 1000)
    job_wait(job_id)
    from jobs.models import Task

    task = Task.objects.get(job_id=job_id)
    QUEUED_AFTER.append((task.queued_at.timestamp() - wall) * 1000)
    CLAIMED_AFTER.append((task.started_at.timestamp() - wall) * 1000)
    return ttft


def job_wait(job_id: str, timeout: float = 60) -> None:
    from jobs.models import JOB_TERMINAL, Job

    deadline = time.time() + timeout
    while Job.objects.filter(pk=job_id).exclude(status__in=JOB_TERMINAL).exists() and time.time() < deadline:
        time.sleep(0.02)


def chunk_delays(token: str, gate: Gate, *, transport: str, watchers: int, chunks: int, direct_client, model):
    """Delays of every (watcher, chunk) pair; with ``transport`` "direct", of one
    openai client reading the server itself."""
    import httpx

    sent_before = len(gate.replies)
    if transport == "direct":
        arrivals = [{}]
        stream = direct_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                       stream=True)  # fmt: skip
        with stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals[0][chunk.choices[0].delta.content.split()[0]] = time.time()
    else:
        gate.open.clear()
        body = {"requirements": "bench", "plan": {"tasks": [{"key": "t", "agent": "bench-llm"}]}}
        job_id = httpx.post(f"{BASE}/jobs", json=body, headers={"Authorization": f"Token {token}"}).json()["id"]
        split = [watchers // CLIENT_PROCESSES + (1 if i < watchers % CLIENT_PROCESSES else 0)
                 for i in range(CLIENT_PROCESSES)]  # fmt: skip
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", transport, job_id, token, str(n), str(chunks)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in split
            if n
        ]
        for child in children:
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("watchers failed to connect")
        gate.open.set()
        arrivals = []
        for child in children:
            arrivals += json.loads(child.stdout.readline())
            child.wait(30)
        job_wait(job_id)
    reply = gate.replies[sent_before]
    # Event 0 is the role chunk; piece i is event i + 1.
    sent = {f"c{i}": reply.sent_at[i + 1] for i in range(chunks)}
    delays, missing = [], 0
    for per_watcher in arrivals:
        for name, at in sent.items():
            if name in per_watcher:
                delays.append(max(0.0, per_watcher[name] - at))
            else:
                missing += 1
    if missing:
        print(f"    ! {transport}, {watchers} watchers: {missing} (watcher, chunk) pairs never arrived")
    return delays


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)

    def p(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return p(0.50) * 1000, p(0.95) * 1000, ordered[-1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="TTFT runs per way (default 10)")
    parser.add_argument("--ttft", type=float, default=0.05, help="the server's wait before its first chunk (s)")
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between chunks (default 0.02)")
    parser.add_argument("--subscribers", type=int, default=50)
    args = parser.parse_args()

    from tests.workers.servers import ScriptedServer

    token = bench_ready("bench-stream")
    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken

    staff, _ = get_user_model().objects.get_or_create(username="bench-stream-staff", defaults={"is_staff": True})
    _, staff_token = ApiToken.issue(user=staff, name="bench")

    gate = Gate()
    server = ScriptedServer(LLM_PORT, gate.script)
    stack = Stack(workers=1)
    stack.start()
    try:
        import httpx
        import openai

        llm_url = f"http://127.0.0.1:{LLM_PORT}/v1"
        agent = {"name": "bench-llm", "kind": "llm", "queue": "default", "base_url": llm_url, "model": "scripted-model",
                 "timeout": 60, "max_attempts": 1}  # fmt: skip
        response = httpx.post(f"{BASE}/agents", json=agent, headers={"Authorization": f"Token {staff_token}"})
        if response.status_code not in (201, 409):
            raise SystemExit(f"could not register the agent: {response.status_code} {response.text}")
        direct = openai.OpenAI(base_url=llm_url, api_key="bench", max_retries=0)

        # 1. Time to first token, interleaved: direct, SSE, websocket; after 2 warm-ups each.
        gate.plan = (pieces_of(5), args.ttft, 0.005)
        ways = {"direct": [], "sse": [], "ws": []}
        total = (args.runs + 2) * 3
        for run in range(args.runs + 2):
            for index, (way, values) in enumerate(ways.items()):
                ttft = direct_ttft(direct, "scripted-model") if way == "direct" else agentbus_ttft(token, way, gate)
                if run >= 2:  # the first two are warm-ups
                    values.append(ttft * 1000)
                progress("time to first token", run * 3 + index + 1, total)
        medians = {way: statistics.median(values) for way, values in ways.items()}

        # 2. Per-chunk delay to watchers.
        gate.plan = (pieces_of(args.chunks), 0.0, args.interval)
        delays = {}
        for label, transport, watchers in (
            ("direct client", "direct", 1),
            ("websocket, 1 watcher", "ws", 1),
            (f"websocket, {args.subscribers} watchers", "ws", args.subscribers),
            ("SSE, 1 watcher", "sse", 1),
            (f"SSE, {args.subscribers} watchers", "sse", args.subscribers),
        ):
            progress(label[:22], 0, 1)
            delays[label] = percentiles(
                chunk_delays(
                    token,
                    gate,
                    transport=transport,
                    watchers=watchers,
                    chunks=args.chunks,
                    direct_client=direct,
                    model="scripted-model",
                )
            )
            progress(label[:22], 1, 1)
    finally:
        stack.stop()
        server.close()

    print(
        f"\ntime to first token, median of {args.runs} (server waits {args.ttft * 1000:.0f} ms before its first chunk)"
    )
    print(f"  direct (openai client -> server)        {medians['direct']:7.1f} ms   baseline")
    for way, name in (("sse", "SSE"), ("ws", "websocket")):
        extra = medians[way] - medians["direct"]
        print(f"  through agentbus, {name:<9} (POST /jobs) {medians[way]:7.1f} ms   +{extra:.1f} ms   (aim <= 20 ms)")
    queued, submit, claimed, requested, written, relay = (
        statistics.median(values[4:])
        for values in (QUEUED_AFTER, SUBMIT_TIMES, CLAIMED_AFTER, REQUESTED_AFTER, WRITTEN_AFTER, RELAY_TIMES)
    )
    print("  where the time went (medians of both transports, from the POST's start):")
    print(f"    the submission dispatched the task         {queued:7.1f} ms   (its queued_at)")
    print(f"    POST /jobs answered                        {submit:7.1f} ms")
    print(f"    a worker claimed it                        {claimed:7.1f} ms   (its started_at)")
    print(f"    the worker's request reached the server    {requested:7.1f} ms")
    print(
        f"    the worker wrote the first chunk (XADD)    {written:7.1f} ms   (direct TTFT {medians['direct']:.1f} ms)"
    )
    print(f"    the reader had it                          {written + relay:7.1f} ms   (relay {relay:.1f} ms)")
    print(f"\nper-chunk delay, server write -> reader ({args.chunks} chunks, one every {args.interval * 1000:.0f} ms)")
    base_p95 = delays["direct client"][1]
    for label, (p50, p95, worst) in delays.items():
        ratio = "baseline" if label == "direct client" else f"p95 x{p95 / base_p95:.1f}"
        print(f"  {label:<24} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  max {worst:7.2f} ms   {ratio}")
    print(f"  (aim: p95 <= 50 ms with {args.subscribers} watchers)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        watcher_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
