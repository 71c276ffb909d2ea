"""What the hardening checks cost: POST /jobs and a memory search with the checks on
against the same requests with them off, in the same run, interleaved.

    python bench/security.py [--n 200] [--rounds 3]

"On" is the product as configured. "Off" swaps back, for the same process: the plain
DRF JSON parser (no depth/number/string policy walk), no gate authorization, the memory
search's JSON query parameters through plain ``json.loads``, and the middleware stack
without django-csp and django-axes. Each round runs both in turn, alternating which goes first (so drift hits both);
the figure is the median per-request time over rounds, and the ratio on/off. Requests go
through Django's full handler (test Client) on PostgreSQL and Redis; the ASGI body-limit
wrapper, which the test Client does not pass through, is timed on its own. The memory
search is keyword mode (no Chroma, no embedding), so the ratio is the least favourable:
a hybrid search spends more on the embedding and the same on the checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_bench")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("AGENTBUS_MAX_ACTIVE_JOBS_PER_USER", "0")
os.environ.setdefault("THROTTLE_USER_RATE", "1000000/min")
os.environ.setdefault("AGENTBUS_MEMORY_WRITE_RATE", "1000000/min")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")

from bench.pipeline import bench_ready

JOB_BODY = {
    "requirements": "bench: a plan of 20 tasks with some input",
    "plan": {
        "tasks": [
            {"key": f"t{i}", "agent": "echo", "input": {"n": i, "text": "x" * 100, "tags": ["a", "b", {"deep": [1, 2]}]},
             "depends_on": [f"t{i - 1}"] if i else []}
            for i in range(20)
        ]
    },
    "metadata": {"source": "bench", "run": 1},
}  # fmt: skip


class Checks:
    """Switches the new checks off and on again in this process."""

    def __init__(self) -> None:
        import jobs.services
        import memory.views
        from core.parsers import StrictJSONParser

        self.parser, self.services, self.views = StrictJSONParser, jobs.services, memory.views
        self.saved = (StrictJSONParser.parse, jobs.services.gates_authorize, memory.views.json_loads)

    def off(self) -> None:
        from rest_framework.parsers import JSONParser

        self.parser.parse = JSONParser.parse
        self.services.gates_authorize = lambda **kwargs: None
        self.views.json_loads = lambda text, root="": json.loads(text)

    def on(self) -> None:
        self.parser.parse, self.services.gates_authorize, self.views.json_loads = self.saved


def client(token: str, middleware: list[str]):
    from django.test import Client
    from django.test.utils import override_settings

    with override_settings(MIDDLEWARE=middleware):
        c = Client(HTTP_AUTHORIZATION=f"Token {token}")
        c.get("/healthz")  # loads the middleware chain under this setting
    return c


def per_request(call, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n


def body_limit_cost(n: int) -> tuple[float, float]:
    from core.body_limit import BodyLimit

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass

    body = json.dumps(JOB_BODY).encode()
    scope = {"type": "http", "headers": [(b"content-length", str(len(body)).encode())]}

    async def run(wrapped) -> float:
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            return None

        started = time.perf_counter()
        for _ in range(n):
            await wrapped(scope, receive, send)
        return (time.perf_counter() - started) / n

    return asyncio.run(run(app)), asyncio.run(run(BodyLimit(app)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    token = bench_ready("bench-security")
    from django.conf import settings

    from memory.models import Memory

    user = Memory._meta.get_field("owner").related_model.objects.get(username="bench-security")
    if not Memory.objects.filter(owner=user).exists():
        Memory.objects.bulk_create(Memory(owner=user, text=f"note {i} about invoices and tea") for i in range(500))
        from memory.services import search_vector_refresh

        search_vector_refresh(ids=list(Memory.objects.filter(owner=user).values_list("id", flat=True)))

    full = list(settings.MIDDLEWARE)
    bare = [m for m in full if not m.startswith(("csp.", "axes."))]
    on_client, off_client = client(token, full), client(token, bare)
    checks = Checks()
    body = json.dumps(JOB_BODY)
    search = {"q": "invoices tea", "mode": "keyword", "k": 5, "filter": '{"n": 1}', "metadata.topic": "billing"}

    def submit(c):
        response = c.post("/jobs", body, content_type="application/json")
        assert response.status_code == 201, response.content[:300]

    def find(c):
        response = c.get("/memory/search", search)
        assert response.status_code == 200, response.content[:300]

    figures: dict[str, list[float]] = {k: [] for k in ("jobs_on", "jobs_off", "search_on", "search_off")}
    for round_ in range(args.rounds):
        # Alternate which goes first, so warm-up and drift do not favour one side.
        for side in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
            getattr(checks, side)()
            c = on_client if side == "on" else off_client
            figures[f"jobs_{side}"].append(per_request(lambda c=c: submit(c), args.n))
            figures[f"search_{side}"].append(per_request(lambda c=c: find(c), args.n))
    checks.on()
    med = {k: statistics.median(v) * 1000 for k, v in figures.items()}
    bare_app, limited = body_limit_cost(args.n * 10)
    from core.json_policy import json_loads

    text = json.dumps(JOB_BODY)
    plain = per_request(lambda: json.loads(text), args.n * 20)
    strict = per_request(lambda: json_loads(text), args.n * 20)
    walk_us = (strict - plain) * 1e6

    print(f"POST /jobs (20-task plan), checks off    {med['jobs_off']:8.2f} ms/request")
    print(f"POST /jobs (20-task plan), checks on     {med['jobs_on']:8.2f} ms/request")
    print(f"  ratio on / off                         {med['jobs_on'] / med['jobs_off']:8.3f} x")
    print(f"GET /memory/search (keyword), checks off {med['search_off']:8.2f} ms/request")
    print(f"GET /memory/search (keyword), checks on  {med['search_on']:8.2f} ms/request")
    print(f"  ratio on / off                         {med['search_on'] / med['search_off']:8.3f} x")
    print(f"ASGI body limit wrapper                  {(limited - bare_app) * 1e6:8.1f} us/request added")
    share = walk_us / (med["jobs_off"] * 1000) * 100
    print(f"JSON policy walk of the job body         {walk_us:8.1f} us ({share:.2f}% of a POST /jobs)")


if __name__ == "__main__":
    main()
