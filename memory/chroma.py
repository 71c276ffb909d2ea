"""Our one door to ChromaDB. Services talk to memory through here, never to chromadb.

Chroma runs as a server (``chroma run``, the Procfile's ``chroma`` process) because the
web, the workers and the orchestrator all read and write memory, and a PersistentClient
shared across processes is unsafe. Chroma only holds vectors: PostgreSQL has the truth,
so anything here can be dropped and rebuilt (``manage.py memory_reindex``).

Embeddings are computed by us (memory.embeddings) and passed in, so no Chroma-side
embedding function is ever attached to the collection.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings


class ChromaUnavailable(Exception):
    """Chroma could not do what we asked (server down, timeout, bad answer). Callers
    survive it: PostgreSQL has the write, and the row stays marked for re-indexing."""


_lock = threading.RLock()  # chroma_collection() takes it, then chroma_client() again
_client = None
_collection = None


def chroma_heartbeat(timeout: float = 2.0) -> bool:
    """True when the Chroma server at CHROMA_URL answers its heartbeat."""
    url = settings.CHROMA_URL.rstrip("/") + "/api/v2/heartbeat"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200 and "nanosecond heartbeat" in json.loads(response.read() or b"{}")
    except (OSError, ValueError):
        return False


def chroma_client():
    """The process's one HTTP client for the Chroma server (thread-safe, reused)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                import chromadb
                from chromadb.config import Settings

                url = urlparse(settings.CHROMA_URL)
                _client = chromadb.HttpClient(
                    host=url.hostname or "127.0.0.1",
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    settings=Settings(anonymized_telemetry=False),
                )
    return _client


def chroma_collection():
    """The memory collection (cosine space, no embedding function), created on first use."""
    global _collection
    if _collection is None:
        with _lock:
            if _collection is None:
                _collection = chroma_client().get_or_create_collection(
                    settings.AGENTBUS_MEMORY_COLLECTION,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                )
    return _collection


def chroma_disconnect() -> None:
    """Forget the client and collection, so the next call connects to CHROMA_URL anew
    (after the setting changed, or in a forked process)."""
    global _client, _collection
    with _lock:
        _client = _collection = None


def _forget_collection() -> None:
    global _collection
    with _lock:
        _collection = None


def _with_collection(operation):
    """Run ``operation(collection)``; if the collection vanished (Chroma's data was
    wiped, or a reindex recreated it in another process), look it up again once."""
    from chromadb.errors import NotFoundError

    try:
        try:
            return operation(chroma_collection())
        except NotFoundError:
            _forget_collection()
            return operation(chroma_collection())
    except Exception as exc:  # httpx, chromadb and OS errors alike mean "not now"
        _forget_collection()
        raise ChromaUnavailable(f"{type(exc).__name__}: {exc}") from exc


def chroma_upsert(*, ids: list[str], embeddings: list[list[float]], metadatas: list[dict]) -> None:
    if ids:
        _with_collection(lambda c: c.upsert(ids=ids, embeddings=embeddings, metadatas=metadatas))


def chroma_delete(*, ids: list[str]) -> None:
    if ids:
        _with_collection(lambda c: c.delete(ids=ids))


@dataclass(frozen=True)
class VectorHit:
    id: str
    similarity: float  # cosine similarity, 1.0 = same direction


def chroma_query(*, embedding: list[float], n: int, where: dict | None) -> list[VectorHit]:
    """The ``n`` nearest vectors to ``embedding`` that match ``where``, nearest first."""
    result = _with_collection(
        lambda c: c.query(query_embeddings=[embedding], n_results=n, where=where or None, include=["distances"])
    )
    return [
        VectorHit(id=i, similarity=1.0 - float(d))
        for i, d in zip(result["ids"][0], result["distances"][0], strict=True)
    ]


def chroma_count() -> int:
    return _with_collection(lambda c: c.count())


def chroma_ids(*, ids: list[str]) -> set[str]:
    """Which of ``ids`` the index holds."""
    if not ids:
        return set()
    return set(_with_collection(lambda c: c.get(ids=ids, include=[]))["ids"])


def chroma_reset() -> None:
    """Drop the memory collection and start an empty one (memory_reindex)."""
    from chromadb.errors import NotFoundError

    try:
        try:
            chroma_client().delete_collection(settings.AGENTBUS_MEMORY_COLLECTION)
        except NotFoundError:
            pass
        _forget_collection()
        chroma_collection()
    except Exception as exc:
        _forget_collection()
        raise ChromaUnavailable(f"{type(exc).__name__}: {exc}") from exc


def chroma_where(conditions: list[dict[str, Any]]) -> dict | None:
    """Chroma wants a bare condition for one, ``$and`` for several, nothing for none."""
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def chroma_default_model_dir() -> Path:
    """Where Chroma's default embedding model (all-MiniLM-L6-v2, ONNX) lives on disk;
    ``seed-chroma-model`` puts it there on machines without internet."""
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    return Path(ONNXMiniLM_L6_V2.DOWNLOAD_PATH) / ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME


def chroma_default_embedding_function():
    """Chroma's own DefaultEmbeddingFunction: the reference our faster path must match,
    and what a plain Chroma user embeds queries with (bench/memory.py's baseline)."""
    from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

    return DefaultEmbeddingFunction()
