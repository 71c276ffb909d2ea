"""Memory search latency through the API against a raw Chroma client, and store throughput.

    python bench/memory.py [--sizes 1000,10000] [--queries 100] [--port 8112]

1. A real web process (daphne, as the Procfile runs it) on 127.0.0.1:--port, and a
   Chroma server (the one at BENCH_CHROMA_URL, or one started here with chroma_serve).
2. Memories are sentences of the BEIR SciFact abstracts (/work/shared/data/scifact or
   ../shared/data/scifact); queries are SciFact's claims. The first --api-stores
   memories are stored through the API: 200 one by one (POST /memory/store), the rest
   in batches of 100 (POST /memory/batch); both throughputs are printed. Beyond that
   (the 10k size), rows are written to PostgreSQL in bulk with their real text, and each
   gets the vector of one of the API-stored sentences plus a little noise (so all are
   distinct): embedding 10k texts takes minutes on a busy 2-core machine, and search
   latency depends on how many vectors and rows there are, not on which.
3. At each size, p50/p95 of:
   - API hybrid:  GET /memory/search?q=...&k=10 over HTTP (auth, scope, embedding,
     Chroma, PostgreSQL full-text, fusion, hydration from PostgreSQL);
   - API vector:  the same with mode=vector;
   - raw Chroma:  the plain-Chroma way, ``collection.query(query_texts=[q], n_results=10)``
     on the same server and collection, embedding with Chroma's DefaultEmbeddingFunction;
   - raw Chroma, pre-embedded: ``query(query_embeddings=...)`` with the vector computed
     outside the timer: Chroma's index alone, a lower bound no API can reach.
   The ratio column is each p50 over raw Chroma's p50.

Uses PostgreSQL (DATABASE_URL, default the local server's `agentbus_memory_bench`
database, created and migrated here), Redis db 1, and its own Chroma collection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_memory_bench")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ["CHROMA_URL"] = os.environ.get("BENCH_CHROMA_URL", "http://127.0.0.1:8113")
os.environ["AGENTBUS_MEMORY_COLLECTION"] = "agentbus-memory-bench"
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("THROTTLE_USER_RATE", "1000000/min")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")

SCIFACT = next(
    (p for p in (ROOT.parent / "shared/data/scifact", Path("/work/shared/data/scifact")) if p.exists()), None
)
SINGLE_STORES = 200
BATCH = 100


def ensure_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def sentences(limit: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    with open(SCIFACT / "corpus.jsonl") as fh:
        for line in fh:
            for sentence in re.split(r"(?<=\.)\s+", json.loads(line)["text"]):
                if 40 <= len(sentence) <= 400 and sentence not in seen:
                    seen.add(sentence)
                    out.append(sentence)
                    if len(out) == limit:
                        return out
    raise SystemExit(f"SciFact has only {len(out)} usable sentences; asked for {limit}")


def queries(n: int) -> list[str]:
    with open(SCIFACT / "queries.jsonl") as fh:
        claims = [json.loads(line)["text"] for line in fh]
    random.Random(7).shuffle(claims)
    return claims[:n]


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):  # the server closed an idle keep-alive
            self.conn.close()
            self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
            response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} -> {response.status}: {data[:300]!r} (see the web log)")
        return json.loads(data) if data else {}


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wait_http(port: int, path: str = "/healthz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"nothing answered on port {port}")


def fill(user, texts: list[str], start: int, end: int) -> None:
    """Write memories start..end straight to PostgreSQL and Chroma (see step 2)."""
    import numpy as np
    from django.utils import timezone

    from memory.chroma import chroma_collection, chroma_upsert
    from memory.models import Memory, MemoryChange
    from memory.services import chroma_metadata, search_vector_refresh

    pool_ids = [str(i) for i in Memory.objects.filter(owner=user).values_list("id", flat=True)]
    pool = np.array(chroma_collection().get(ids=pool_ids, include=["embeddings"])["embeddings"], dtype=np.float32)
    rng = np.random.default_rng(5)
    now = timezone.now()
    for chunk_start in range(start, end, 500):
        rows = [
            Memory(owner=user, text=texts[i], metadata={"n": i}, indexed_at=now)
            for i in range(chunk_start, min(chunk_start + 500, end))
        ]
        Memory.objects.bulk_create(rows)
        MemoryChange.objects.bulk_create(
            MemoryChange(
                memory=m,
                version=1,
                action="created",
                text=m.text,
                namespace=m.namespace,
                metadata=m.metadata,
                actor=user,
                at=now,
            )
            for m in rows
        )
        vectors = pool[rng.integers(0, len(pool), len(rows))] + rng.normal(0, 0.02, (len(rows), pool.shape[1]))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        chroma_upsert(
            ids=[str(m.id) for m in rows], embeddings=vectors.tolist(), metadatas=[chroma_metadata(m) for m in rows]
        )
        search_vector_refresh(ids=[m.id for m in rows])
        sys.stderr.write(f"\r  filled {chunk_start + len(rows)}/{end}")
    sys.stderr.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--raw-queries", type=int, default=30, help="queries for raw Chroma with its own embedding (slow)"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "8112")))
    parser.add_argument("--api-stores", type=int, default=1000, help="memories stored through the API (embedded)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if SCIFACT is None:
        raise SystemExit("BEIR SciFact not found in ../shared/data/scifact")

    import django

    django.setup()
    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken
    from memory.chroma import (
        chroma_collection,
        chroma_default_embedding_function,
        chroma_heartbeat,
        chroma_reset,
    )
    from memory.embeddings import embed
    from memory.models import Memory

    started: list[subprocess.Popen] = []
    try:
        if not chroma_heartbeat():
            path = tempfile.mkdtemp(prefix="bench-chroma-")
            started.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "chroma_serve", "--path", path],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            deadline = time.monotonic() + 60
            while not chroma_heartbeat():
                if time.monotonic() > deadline:
                    raise SystemExit("chroma did not start")
                time.sleep(0.3)
        chroma_reset()
        user, _ = get_user_model().objects.get_or_create(username="memory-bench")
        Memory.objects.filter(owner=user).delete()
        _, token = ApiToken.issue(user=user)

        daphne = str(Path(sys.executable).with_name("daphne"))
        web_log = Path(tempfile.mkdtemp(prefix="bench-web-")) / "daphne.log"
        print(f"web log: {web_log}")
        started.append(
            subprocess.Popen(
                [daphne, "-b", "127.0.0.1", "-p", str(args.port), "agentbus_site.asgi:application"],
                cwd=ROOT,
                stdout=web_log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_http(args.port)
        api = Api(args.port, token)

        texts = sentences(max(sizes))
        claims = queries(args.queries)
        ef = chroma_default_embedding_function()
        raw_chroma = chroma_collection()  # the same server and collection, no embedding function
        print(f"memories: SciFact sentences; queries: {len(claims)} SciFact claims; k=10; web: daphne :{args.port}")

        rows = []
        throughput = {}
        stored = 0
        for size in sizes:
            # 1. Store up to `size`: singles first, then batches.
            if stored < SINGLE_STORES:
                singles = texts[stored : min(SINGLE_STORES, size)]
                t = time.perf_counter()
                for text in singles:
                    api.call("POST", "/memory/store", {"text": text, "metadata": {"n": stored}})
                    stored += 1
                throughput["single"] = len(singles) / (time.perf_counter() - t)
            if stored < size and stored >= args.api_stores:
                fill(user, texts, stored, size)
                stored = size
            if stored < size:
                t, n = time.perf_counter(), size - stored
                for start in range(stored, size, BATCH):
                    chunk = texts[start : min(start + BATCH, size)]
                    api.call("POST", "/memory/batch", {"memories": [{"text": s} for s in chunk]})
                    sys.stderr.write(f"\r  stored {start + len(chunk)}/{size}")
                stored = size
                sys.stderr.write("\n")
                throughput[f"batch to {size}"] = n / (time.perf_counter() - t)

            # 2. Search latencies (one warm-up pass each).
            def api_search(q, mode="hybrid"):
                return api.call("GET", "/memory/search?" + urlencode({"q": q, "k": 10, "mode": mode}))

            vectors = {q: embed([q])[0].tolist() for q in claims}
            for q in claims[:5]:
                api_search(q), api_search(q, "vector"), raw_chroma.query(query_embeddings=[vectors[q]], n_results=10)
            ef(claims[:2])
            hybrid = timed(api_search, claims)
            vector = timed(lambda q: api_search(q, "vector"), claims)
            raw = timed(lambda q: raw_chroma.query(query_embeddings=ef([q]), n_results=10), claims[: args.raw_queries])
            index = timed(lambda q, v=vectors: raw_chroma.query(query_embeddings=[v[q]], n_results=10), claims)
            base = pct(raw, 50)
            if not rows:
                print(f"{'memories':>8}  {'path':<32} {'p50 ms':>8} {'p95 ms':>8} {'p50 / raw':>9} {'n':>4}")
            for name, values in (
                ("API hybrid", hybrid),
                ("API vector", vector),
                ("raw Chroma (its own embedding)", raw),
                ("raw Chroma, pre-embedded", index),
            ):
                rows.append((size, name, pct(values, 50), pct(values, 95), pct(values, 50) / base, len(values)))
                print(
                    f"{size:>8}  {name:<32} {pct(values, 50):>8.1f} {pct(values, 95):>8.1f} "
                    f"{pct(values, 50) / base:>9.2f} {len(values):>4}",
                    flush=True,
                )

        print()
        for name, per_second in throughput.items():
            print(f"store throughput, {name:<16} {per_second:>8.1f} memories/s")
        print(
            "\nraw Chroma = collection.query(query_texts) on the same server and data, embedding with Chroma's "
            "DefaultEmbeddingFunction; the API embeds the same model padded to the query's length."
        )
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
