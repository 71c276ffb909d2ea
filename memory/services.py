"""Writes on memory: store (one or many), update, delete, and keeping Chroma in step.

Every write commits to PostgreSQL first (with a MemoryChange row for its history) and
marks the row unindexed; on commit the row is embedded and written to Chroma. If Chroma
is down, the write still succeeded: the row stays marked, search still finds it through
the full-text side, and the next index pass (after any later write, or
``manage.py memory_reindex --pending``) puts it in Chroma. Nothing is lost.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.http import Http404
from django.utils import timezone

from core.errors import ApplicationError, Forbidden, NotFound
from memory.bounds import quota_check
from memory.chroma import ChromaUnavailable, chroma_delete, chroma_reset, chroma_upsert
from memory.embeddings import embed
from memory.metadata_policy import metadata_check, metadata_problems
from memory.models import (
    DEFAULT_NAMESPACE,
    NAMESPACE_PATTERN,
    Memory,
    MemoryChange,
)
from memory.selectors import namespace_access

logger = logging.getLogger(__name__)

# Chroma has no NULL: a memory without a TTL "expires" at the end of year 9999.
NEVER_EXPIRES = 253402300799.0
INDEX_BATCH = 256


@dataclass(frozen=True)
class NewMemory:
    text: str
    namespace: str = DEFAULT_NAMESPACE
    metadata: dict | None = None
    ttl: float | None = None  # seconds from now


def _namespace_resolve(*, user, namespace: str, field: str = "namespace") -> bool:
    """Whether ``namespace`` is shared; raises if the user may not write to it."""
    if not re.match(NAMESPACE_PATTERN, namespace):
        raise ApplicationError(
            "A namespace is 1 to 100 letters, digits, '.', '_', ':' or '-'.",
            fields={field: ["1 to 100 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"]},
        )
    access = namespace_access(user=user, namespace=namespace)
    if access is None:
        return False
    if not access.readable:
        # Someone else's shared namespace answers like something that does not exist.
        raise NotFound(f"No such namespace: {namespace}.", code="not_found", fields={field: ["no such namespace"]})
    if not access.writable:
        raise Forbidden(
            f"You may read the shared namespace {namespace} but not write to it.",
            code="permission_denied",
            fields={field: ["read-only for you"]},
        )
    return True


def _expires_at(ttl: float | None, now: datetime) -> datetime | None:
    return None if ttl is None else now + timedelta(seconds=ttl)


def memory_store_many(*, owner, items: list[NewMemory]) -> list[Memory]:
    """Store memories in one transaction (all or none) and index them on commit."""
    if len(items) > settings.AGENTBUS_MEMORY_MAX_BATCH:
        raise ApplicationError(
            f"At most {settings.AGENTBUS_MEMORY_MAX_BATCH} memories per batch.",
            fields={"memories": [f"at most {settings.AGENTBUS_MEMORY_MAX_BATCH} items"]},
        )
    quota_check(owner=owner, adding=len(items))  # memory/bounds.py
    now = timezone.now()
    shared: dict[str, bool] = {}
    for index, item in enumerate(items):
        metadata_check(item.metadata, field="metadata" if len(items) == 1 else f"memories[{index}].metadata")
        if item.namespace not in shared:
            field = "namespace" if len(items) == 1 else f"memories[{index}].namespace"
            shared[item.namespace] = _namespace_resolve(user=owner, namespace=item.namespace, field=field)
    memories = [
        Memory(
            owner=owner,
            namespace=item.namespace,
            shared=shared[item.namespace],
            text=item.text,
            metadata=item.metadata or {},
            expires_at=_expires_at(item.ttl, now),
        )
        for item in items
    ]
    with transaction.atomic():
        Memory.objects.bulk_create(memories)
        MemoryChange.objects.bulk_create(_change(m, MemoryChange.Action.CREATED, owner, now) for m in memories)
        ids = [m.id for m in memories]
        search_vector_refresh(ids=ids)
        transaction.on_commit(lambda: _index_then_repair(ids), robust=True)
    return memories


def memory_store(
    *, owner, text: str, namespace: str = DEFAULT_NAMESPACE, metadata: dict | None = None, ttl: float | None = None
) -> Memory:
    (memory,) = memory_store_many(
        owner=owner, items=[NewMemory(text=text, namespace=namespace, metadata=metadata, ttl=ttl)]
    )
    return memory


_UNSET: Any = object()


def memory_update(
    *, memory: Memory, actor, text: str = _UNSET, metadata: dict = _UNSET, namespace: str = _UNSET, ttl=_UNSET
) -> Memory:
    """Change a memory; the previous version stays in its history. ``ttl=None`` removes
    the expiry, a number of seconds sets it from now."""
    now = timezone.now()
    with transaction.atomic():
        locked = Memory.objects.select_for_update().get(pk=memory.pk)
        if locked.deleted_at is not None:
            raise Http404("No such memory.")
        if text is not _UNSET:
            locked.text = text
        if metadata is not _UNSET:
            metadata_check(metadata)
            locked.metadata = metadata
        if namespace is not _UNSET and namespace != locked.namespace:
            locked.shared = _namespace_resolve(user=actor, namespace=namespace)
            locked.namespace = namespace
        if ttl is not _UNSET:
            locked.expires_at = _expires_at(ttl, now)
        locked.version += 1
        locked.indexed_at = None
        locked.save()
        MemoryChange.objects.create(**_change_fields(locked, MemoryChange.Action.UPDATED, actor, now))
        if text is not _UNSET:
            search_vector_refresh(ids=[locked.id])
        transaction.on_commit(lambda: memory_index(ids=[locked.id]), robust=True)
    return locked


def memory_delete(*, memory: Memory, actor) -> None:
    """Soft-delete: gone from search and the API at once, its history kept, its vector
    dropped from Chroma on commit (or by the next index pass if Chroma is down)."""
    now = timezone.now()
    with transaction.atomic():
        locked = Memory.objects.select_for_update().get(pk=memory.pk)
        if locked.deleted_at is not None:
            raise Http404("No such memory.")
        locked.deleted_at = now
        locked.version += 1
        locked.indexed_at = None
        locked.save(update_fields=["deleted_at", "version", "indexed_at", "updated_at"])
        MemoryChange.objects.create(**_change_fields(locked, MemoryChange.Action.DELETED, actor, now))
        transaction.on_commit(lambda: memory_index(ids=[locked.id]), robust=True)


def search_vector_refresh(*, ids: list) -> None:
    """Recompute the stored full-text vector of these rows (PostgreSQL; a no-op elsewhere)."""
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchVector

        Memory.objects.filter(id__in=ids).update(search_vector=SearchVector("text", config="english"))


def _change_fields(memory: Memory, action: str, actor, at: datetime) -> dict:
    return {
        "memory_id": memory.id,
        "version": memory.version,
        "action": action,
        "text": memory.text,
        "namespace": memory.namespace,
        "metadata": memory.metadata,
        "expires_at": memory.expires_at,
        "actor": actor,
        "at": at,
    }


def _change(memory: Memory, action: str, actor, at: datetime) -> MemoryChange:
    return MemoryChange(**_change_fields(memory, action, actor, at))


# --- keeping Chroma in step --------------------------------------------------------------


def chroma_metadata(memory: Memory) -> dict:
    """What Chroma stores beside the vector: enough to filter a search by scope,
    namespace, expiry and the scalar metadata fields (prefixed ``m.``)."""
    meta: dict[str, Any] = {
        "scope": f"s:{memory.namespace}" if memory.shared else f"u:{memory.owner_id}",
        "namespace": memory.namespace,
        "expires_at": memory.expires_at.timestamp() if memory.expires_at else NEVER_EXPIRES,
    }
    for key, value in memory.metadata.items():
        if isinstance(value, (str, int, float, bool)):
            meta[f"m.{key}"] = value
    return meta


def memory_index(*, ids: list, skipped: list | None = None) -> int:
    """Make Chroma reflect these rows as they are now; returns how many were indexed.

    1. Load the rows (any state); deleted ones are removed from Chroma, live ones are
       embedded in one batch and upserted (expired ones too: search filters them out,
       and a later TTL extension needs the vector back).
    2. Mark each row indexed only if its version did not change meanwhile.
    A Chroma failure is logged and leaves the rows marked for the next pass. A row whose
    metadata Chroma would refuse (stored before memory.metadata_policy checked it) is
    left out, logged and appended to ``skipped``, so one bad row cannot stop the batch.
    """
    rows = list(
        Memory.objects.filter(id__in=ids).only(
            "id", "owner_id", "namespace", "shared", "text", "metadata", "expires_at", "deleted_at", "version"
        )
    )
    if not rows:
        return 0
    bad = [m for m in rows if m.deleted_at is None and metadata_problems(m.metadata)]
    if bad:
        logger.warning("skipped %d memories whose metadata chroma cannot store: %s", len(bad), [str(m.id) for m in bad])
        if skipped is not None:
            skipped.extend(m.id for m in bad)
        rows = [m for m in rows if m not in bad]
    live = [m for m in rows if m.deleted_at is None]
    gone = [m for m in rows if m.deleted_at is not None]
    try:
        if live:
            vectors = embed([m.text for m in live])
            chroma_upsert(
                ids=[str(m.id) for m in live],
                embeddings=vectors.tolist(),
                metadatas=[chroma_metadata(m) for m in live],
            )
        chroma_delete(ids=[str(m.id) for m in gone])
    except ChromaUnavailable as exc:
        logger.warning("chroma did not take %d memories (%s); they stay marked for re-indexing", len(rows), exc)
        return 0
    now = timezone.now()
    done = 0
    for memory in rows:  # one UPDATE per row: each is conditional on its own version
        done += Memory.objects.filter(pk=memory.pk, version=memory.version).update(indexed_at=now)
    return done


def _index_then_repair(ids: list) -> None:
    """Index a write; when Chroma took it, also catch up rows an earlier outage left
    behind (one cheap query on the partial index when there are none)."""
    if memory_index(ids=ids):
        repaired = memory_index_pending(limit=INDEX_BATCH)
        if repaired:
            logger.info("re-indexed %d memories that chroma had missed", repaired)


def memory_index_pending(*, limit: int = 10_000, skipped: list | None = None) -> int:
    """The repair pass: index every row Chroma does not reflect yet, oldest first; rows
    that cannot be indexed are skipped (and listed in ``skipped``), not retried in a loop."""
    total = 0
    skipped = [] if skipped is None else skipped
    while total < limit:
        ids = list(
            Memory.objects.filter(indexed_at__isnull=True)
            .exclude(id__in=skipped)
            .order_by("updated_at")
            .values_list("id", flat=True)[:INDEX_BATCH]
        )
        if not ids:
            break
        before = len(skipped)
        indexed = memory_index(ids=ids, skipped=skipped)
        total += indexed
        if indexed == 0 and len(skipped) == before:  # Chroma is down or every row changed under us; try again later
            break
    return total


def memory_reindex_all(*, skipped: list | None = None) -> int:
    """Rebuild the Chroma collection from PostgreSQL (after its data was lost, or a
    change of embedding model): drop it, mark every live row, index them all."""
    chroma_reset()
    Memory.objects.filter(deleted_at__isnull=True).update(indexed_at=None)
    Memory.objects.filter(deleted_at__isnull=False, indexed_at__isnull=True).update(indexed_at=timezone.now())
    return memory_index_pending(limit=10**9, skipped=skipped)


# --- jobs that asked to be remembered ------------------------------------------------------


def _output_text(output: Any) -> str:
    """The text to remember for a task's output: the output itself when it is a string,
    its ``text``/``answer``/``result``/``summary`` string when it has one, else its JSON."""
    if isinstance(output, str):
        text = output
    elif isinstance(output, dict) and any(isinstance(output.get(k), str) for k in _TEXT_KEYS):
        text = next(output[k] for k in _TEXT_KEYS if isinstance(output.get(k), str))
    else:
        text = json.dumps(output, sort_keys=True, default=str)
    return text[: settings.AGENTBUS_MEMORY_MAX_TEXT_CHARS]


_TEXT_KEYS = ("text", "answer", "result", "summary", "output")


def memory_remember_job(*, job_id) -> list[Memory]:
    """Store a succeeded ``remember`` job's final outputs as memories of its owner, one
    per final task, with provenance (job, task, agent) in the metadata. Idempotent: a
    job already remembered is not stored twice (the orchestrator may finish it again
    after a crash)."""
    from jobs.models import Job, JobStatus, Task

    job = Job.objects.filter(pk=job_id, status=JobStatus.SUCCEEDED, remember=True).select_related("owner").first()
    if job is None:
        return []
    if Memory.objects.filter(owner=job.owner, metadata__source="job", metadata__job=str(job.id)).exists():
        return []
    outputs = (job.result or {}).get("outputs") or {}
    tasks = {t.key: t for t in Task.objects.filter(job=job, key__in=list(outputs)).only("id", "key", "agent")}
    items = [
        NewMemory(
            text=_output_text(output),
            metadata={
                "source": "job",
                "job": str(job.id),
                "task": str(tasks[key].id),
                "task_key": key,
                "agent": tasks[key].agent,
            },
        )
        for key, output in sorted(outputs.items())
        if key in tasks and output not in (None, "", {}, [])
    ]
    return memory_store_many(owner=job.owner, items=items) if items else []
