"""Time to result of a one-task job through MCP and through A2A, against the same job
over REST, measured in one run.

    python bench/protocols.py [--runs 20]

The stack of bench/pipeline.py (uvicorn as the Procfile's web line, the orchestrator,
one worker). Each run submits a one-task ``echo`` job and waits for its result, one
job at a time, the three ways interleaved so drift hits each the same:
1. baseline, REST: the client package (``agentbus_client.AsyncClient``): POST /jobs,
   follow the job's websocket until it finishes, GET /jobs/{id}/results;
2. MCP: the official ``mcp`` client over streamable HTTP, one open session, the
   ``submit_job`` tool with ``wait=true`` (it follows the job server-side and answers
   its results);
3. A2A: the official ``a2a-sdk`` client, a blocking SendMessage with the plan as a
   data part (answered once the job finished, with its outputs as artifacts).
It prints the median and p90 time to result of each and the ratio of the medians to
REST's; the first runs warm each path up and are not counted.

PostgreSQL database ``agentbus_bench_protocols`` (created and migrated here) and Redis
BENCH_REDIS_URL (default db 13, flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench_protocols")
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("BENCH_PORT", "8196")

from bench.pipeline import PORT, Stack, bench_ready

BASE = f"http://127.0.0.1:{PORT}"
PLAN = {"tasks": [{"key": "only", "agent": "echo", "input": {"n": 1}}]}
WARMUP = 3


async def rest_once(client) -> float:
    started = time.perf_counter()
    job = await client.submit(plan=PLAN, requirements="bench")
    results = await client.wait(job["id"], timeout=60)
    assert results["status"] == "succeeded", results
    return time.perf_counter() - started


async def mcp_once(session) -> float:
    started = time.perf_counter()
    result = await session.call_tool("submit_job", {"plan": PLAN, "requirements": "bench", "wait": True, "timeout": 60})
    assert not result.is_error and result.structured_content["status"] == "succeeded", result
    return time.perf_counter() - started


async def a2a_once(client) -> float:
    from a2a.helpers import new_data_part, new_text_part
    from a2a.types import a2a_pb2 as pb

    started = time.perf_counter()
    message = pb.Message(
        message_id=str(uuid.uuid4()), role=pb.ROLE_USER, parts=[new_text_part("bench"), new_data_part(PLAN)]
    )
    events = [event async for event in client.send_message(pb.SendMessageRequest(message=message))]
    assert events[-1].task.status.state == pb.TASK_STATE_COMPLETED, events[-1]
    assert any(a.name == "only" for a in events[-1].task.artifacts)
    return time.perf_counter() - started


async def measure(token: str, runs: int) -> dict[str, list[float]]:
    import httpx
    import httpx2
    from a2a.client import A2ACardResolver, ClientConfig, create_client
    from agentbus_client import AsyncClient
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    times: dict[str, list[float]] = {"REST": [], "MCP": [], "A2A": []}
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        AsyncClient(BASE, token) as rest,
        httpx2.AsyncClient(headers=auth, timeout=60) as mcp_http,
        Client(streamable_http_client(f"{BASE}/mcp", http_client=mcp_http)) as mcp,
        httpx.AsyncClient(headers=auth, timeout=60) as a2a_http,
    ):
        card = await A2ACardResolver(a2a_http, BASE).get_agent_card()
        a2a = await create_client(card, client_config=ClientConfig(httpx_client=a2a_http, streaming=False))
        ways = {"REST": (rest_once, rest), "MCP": (mcp_once, mcp), "A2A": (a2a_once, a2a)}
        for i in range(WARMUP + runs):
            for name, (once, client) in ways.items():
                elapsed = await once(client)
                if i >= WARMUP:
                    times[name].append(elapsed)
            sys.stderr.write(f"\r  run {i + 1}/{WARMUP + runs}")
        sys.stderr.write("\n")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    token = bench_ready("bench-protocols")
    stack = Stack()
    stack.start()
    try:
        times = asyncio.run(measure(token, args.runs))
    finally:
        stack.stop()
    baseline = statistics.median(times["REST"])
    print(f"one-task echo job, time to result, {args.runs} runs each (after {WARMUP} warm-up runs)")
    for name, values in times.items():
        median = statistics.median(values)
        p90 = sorted(values)[max(0, int(len(values) * 0.9) - 1)]
        ratio = f"{median / baseline:5.2f} x REST" if name != "REST" else "baseline"
        print(f"  {name:<5} median {median * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   {ratio}")


if __name__ == "__main__":
    main()
