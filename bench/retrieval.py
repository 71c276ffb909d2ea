"""Retrieval quality of memory search on BEIR SciFact: recall@5 and nDCG@10, vector-only
against hybrid (vector + PostgreSQL full-text, fused by reciprocal rank).

    python bench/retrieval.py [--docs 1000]   # --docs 0: the whole corpus (5,183)

1. Corpus: every judged abstract plus a fixed random sample of the others, up to
   --docs (0 = all 5,183 abstracts, the setting the published figure uses; it takes
   ~3 minutes of embedding on an idle 2-core machine, the default 1,000 about a fifth
   of that). Document text = title + " " + abstract, as in BEIR.
2. Stored through memory.services (PostgreSQL + the Chroma server) as one user's
   memories; searched through memory.selectors.memory_search, k=10, for SciFact's 300
   test claims, in "vector", "keyword" and "hybrid" modes.
3. recall@5 = share of a claim's relevant abstracts in its top 5, averaged; nDCG@10
   with binary gains (BEIR's definition, pytrec_eval's ndcg_cut_10).

Reference: all-MiniLM-L6-v2 scores nDCG@10 = 0.64508 on the full corpus (MTEB); a smaller
corpus has fewer distractors, so its figures read higher. Uses PostgreSQL
(`agentbus_memory_bench`, created and migrated here) and its own Chroma collection.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus_memory_bench")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ["CHROMA_URL"] = os.environ.get("BENCH_RETRIEVAL_CHROMA_URL", "http://127.0.0.1:8114")
os.environ["AGENTBUS_MEMORY_COLLECTION"] = "agentbus-memory-retrieval"
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")

SCIFACT = next(
    (p for p in (ROOT.parent / "shared/data/scifact", Path("/work/shared/data/scifact")) if p.exists()), None
)
PUBLISHED_NDCG10 = 0.64508


def load() -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    corpus = {}
    with open(SCIFACT / "corpus.jsonl") as fh:
        for line in fh:
            doc = json.loads(line)
            corpus[doc["_id"]] = (doc.get("title", "") + " " + doc["text"]).strip()
    with open(SCIFACT / "queries.jsonl") as fh:
        claims = {q["_id"]: q["text"] for q in map(json.loads, fh)}
    qrels: dict[str, set[str]] = defaultdict(set)
    with open(SCIFACT / "qrels.tsv") as fh:
        next(fh)
        for line in fh:
            qid, did, score = line.split()
            if int(score) > 0:
                qrels[qid].add(did)
    return corpus, {q: t for q, t in claims.items() if q in qrels}, qrels


def ensure_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    return dcg / ideal


def recall_at_5(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:5]) & relevant) / len(relevant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="corpus size (0 = all 5,183)")
    args = parser.parse_args()
    if SCIFACT is None:
        raise SystemExit("BEIR SciFact not found in ../shared/data/scifact")

    import django

    django.setup()
    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from memory.chroma import chroma_heartbeat, chroma_reset
    from memory.models import Memory
    from memory.selectors import memory_search
    from memory.services import NewMemory, memory_index_pending, memory_store_many

    corpus, claims, qrels = load()
    judged = sorted({d for docs in qrels.values() for d in docs})
    others = sorted(set(corpus) - set(judged))
    random.Random(13).shuffle(others)
    size = len(corpus) if args.docs <= 0 else max(args.docs, len(judged))
    doc_ids = judged + others[: size - len(judged)]

    started = None
    try:
        if not chroma_heartbeat():
            chroma_log = Path(tempfile.mkdtemp(prefix="bench-chroma-log-")) / "chroma.log"
            started = subprocess.Popen(
                [sys.executable, "manage.py", "chroma_serve", "--path", tempfile.mkdtemp(prefix="bench-chroma-")],
                cwd=ROOT, stdout=chroma_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + 120
            while not chroma_heartbeat():
                if time.monotonic() > deadline:
                    raise SystemExit(f"chroma did not start; see {chroma_log}")
                time.sleep(0.3)
        chroma_reset()
        user, _ = get_user_model().objects.get_or_create(username="retrieval-bench")
        Memory.objects.filter(owner=user).delete()

        t = time.perf_counter()
        for start in range(0, len(doc_ids), 100):
            chunk = doc_ids[start : start + 100]
            memory_store_many(owner=user, items=[NewMemory(text=corpus[d], metadata={"doc": d}) for d in chunk])
            sys.stderr.write(f"\r  indexed {start + len(chunk)}/{len(doc_ids)} abstracts")
        sys.stderr.write("\n")
        memory_index_pending()
        index_seconds = time.perf_counter() - t
        doc_of = {str(m_id): doc for m_id, doc in Memory.objects.filter(owner=user).values_list("id", "metadata__doc")}

        print(
            f"BEIR SciFact test: {len(claims)} claims, {len(doc_ids)} of {len(corpus)} abstracts "
            f"(all {len(judged)} judged + {len(doc_ids) - len(judged)} others); indexed in {index_seconds:.0f}s"
        )
        print(f"{'mode':<8} {'recall@5':>9} {'nDCG@10':>8} {'p50 ms':>7}")
        for mode in ("vector", "keyword", "hybrid"):
            recalls, ndcgs, times = [], [], []
            for qid, claim in claims.items():
                q0 = time.perf_counter()
                hits = memory_search(user=user, query=claim, k=10, mode=mode)
                times.append((time.perf_counter() - q0) * 1000)
                ranked = [doc_of[str(h.memory.id)] for h in hits]
                recalls.append(recall_at_5(ranked, qrels[qid]))
                ndcgs.append(ndcg_at_10(ranked, qrels[qid]))
            times.sort()
            print(
                f"{mode:<8} {sum(recalls) / len(recalls):>9.4f} {sum(ndcgs) / len(ndcgs):>8.4f} {times[len(times) // 2]:>7.1f}"
            )
        note = "same corpus as the published figure" if len(doc_ids) == len(corpus) else "smaller corpus: reads higher"
        print(f"published nDCG@10 of all-MiniLM-L6-v2 on the full corpus: {PUBLISHED_NDCG10} ({note})")
    finally:
        if started is not None and started.poll() is None:
            os.killpg(started.pid, signal.SIGTERM)
            started.wait(10)


if __name__ == "__main__":
    main()
