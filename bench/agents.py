"""Cost of HTTP and LLM agents against an in-process Python agent, measured in one run.

    python bench/agents.py [--jobs 200] [--clients 4]

The same stack as bench/pipeline.py (daphne, orchestrator, one worker, as the Procfile
starts them) runs three batches of single-task jobs submitted over REST:
1. baseline: the built-in ``echo`` Python agent, run in the worker's process;
2. an HTTP agent: a stdlib ThreadingHTTPServer on 127.0.0.1 that checks each request's
   HMAC signature and timestamp, as examples/http_agent.py does;
3. an LLM agent: the official openai client against a scripted OpenAI-compatible
   /v1/chat/completions server on 127.0.0.1 (so the model's own time is not measured).
It prints jobs/s of each and the ratio to the baseline; the difference is the
platform's per-call overhead of each kind (signing, HTTP, circuit breaker, usage
bookkeeping), not the agents' work.

PostgreSQL database ``agentbus_bench_agents`` (created and migrated here) and Redis db
BENCH_REDIS_URL (default db 4, flushed).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench_agents")
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
os.environ.setdefault("BENCH_PORT", "8143")
AGENT_PORT, LLM_PORT = 8144, 8145
os.environ["AGENTBUS_LLM_BASE_URL"] = f"http://127.0.0.1:{LLM_PORT}/v1"
os.environ.setdefault("AGENTBUS_LLM_MODEL", "bench-model")
os.environ.setdefault("AGENTBUS_MAX_ACTIVE_JOBS_PER_USER", "0")  # the batches submit faster than they run

from bench.pipeline import Stack, bench_ready, submit_jobs, wait_finished

SECRET = b"bench-secret"


class AgentHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/v1/"):  # the scripted LLM
            reply = {"id": "c", "object": "chat.completion", "created": 0, "model": "bench-model",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}  # fmt: skip
            ok = True
        else:  # the HTTP agent, checking the signature as a real one must
            ts = self.headers.get("X-Agentbus-Timestamp", "0")
            expected = "sha256=" + hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            signature = self.headers.get("X-Agentbus-Signature", "")
            ok = hmac.compare_digest(expected, signature) and abs(time.time() - int(ts)) < 300
            reply = {"output": json.loads(body)["input"]}
        data = json.dumps(reply).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), AgentHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def batch(token: str, agent: str, n: int, clients: int) -> float:
    from jobs.models import Job

    bodies = [{"plan": {"tasks": [{"key": "only", "agent": agent, "input": {"i": i}}]}} for i in range(n)]
    started = time.perf_counter()
    ids = submit_jobs(token, bodies, clients)
    wait_finished(ids, f"{agent} jobs")
    elapsed = time.perf_counter() - started
    bad = Job.objects.filter(pk__in=ids).exclude(status="succeeded").values_list("error", flat=True)[:3]
    if bad:
        raise RuntimeError(f"jobs of {agent} did not succeed: {list(bad)}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    token = bench_ready("bench")
    from agents.models import AgentDefinition
    from agents.registry import agents_changed

    AgentDefinition.objects.all().delete()
    AgentDefinition.objects.create(
        name="bench-http", kind="http", url=f"http://127.0.0.1:{AGENT_PORT}/", secret=SECRET.decode(), timeout=10
    )
    AgentDefinition.objects.create(name="bench-llm", kind="llm", timeout=10)
    agents_changed()

    servers = [serve(AGENT_PORT), serve(LLM_PORT)]
    stack = Stack()
    stack.start()
    print(
        f"agents benchmark: {args.jobs} single-task jobs per kind, {args.clients} REST clients, {os.cpu_count()} cores"
    )
    try:
        batch(token, "echo", min(30, args.jobs), args.clients)  # warm-up
        rates = {agent: batch(token, agent, args.jobs, args.clients) for agent in ("echo", "bench-http", "bench-llm")}
    finally:
        stack.stop()
        for server in servers:
            server.shutdown()
    base = rates["echo"]
    print()
    for agent, label in (("echo", "Python agent (echo), baseline"), ("bench-http", "HTTP agent, signed, local endpoint"),
                         ("bench-llm", "LLM agent, openai client, local endpoint")):  # fmt: skip
        print(f"{label:<46}{rates[agent]:>8.1f} jobs/s   ratio to baseline {rates[agent] / base:.2f} x")


if __name__ == "__main__":
    main()
