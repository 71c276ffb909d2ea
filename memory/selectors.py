"""Reads on memory, always scoped: a user reads their own private memories and the
shared namespaces granted to them (directly or through a group), nothing else.

Staff manage shared namespaces and may write to any of them, but their searches are
scoped like everyone's: a staff member's agents must not recall other users' private
memories by accident. Operators read everything in /admin/.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import F, Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.http import Http404
from django.utils import timezone

from memory.chroma import ChromaUnavailable, chroma_query, chroma_where
from memory.embeddings import embed
from memory.models import Memory, MemoryChange, MemoryNamespace, NamespaceGrant

logger = logging.getLogger(__name__)

RRF_K = 60  # the constant from Cormack et al. (2009); robust across collections
SEARCH_MODES = ("hybrid", "vector", "keyword")


@dataclass(frozen=True)
class NamespaceAccess:
    readable: bool
    writable: bool


def namespace_access(*, user, namespace: str) -> NamespaceAccess | None:
    """How ``user`` may use the shared namespace ``namespace``; None when it is not a
    shared namespace (then it is the user's own private one)."""
    shared = MemoryNamespace.objects.filter(name=namespace).first()
    if shared is None:
        return None
    if user.is_staff:
        return NamespaceAccess(readable=True, writable=True)
    grants = list(
        NamespaceGrant.objects.filter(namespace=shared)
        .filter(Q(user=user) | Q(group__in=user.groups.all()))
        .values_list("can_write", flat=True)
    )
    if not grants:
        return None  # not granted: like a name nobody shares (see memory_scope)
    return NamespaceAccess(readable=True, writable=any(grants))


def shared_namespaces_readable(user) -> list[str]:
    grants = NamespaceGrant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
    return sorted(set(grants.values_list("namespace__name", flat=True)))


def shared_namespaces_writable(user) -> set[str]:
    if user.is_staff:
        return set(MemoryNamespace.objects.values_list("name", flat=True))
    grants = NamespaceGrant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()), can_write=True)
    return set(grants.values_list("namespace__name", flat=True))


@dataclass(frozen=True)
class Scope:
    """What one user may read, as a PostgreSQL filter and as a Chroma ``where``."""

    user_id: int
    shared: list[str]
    namespace: str | None = None

    def q(self) -> Q:
        private = Q(owner_id=self.user_id, shared=False)
        shared = Q(shared=True, namespace__in=self.shared)
        if self.namespace is None:
            return private | shared if self.shared else private
        if self.namespace in self.shared:
            return Q(shared=True, namespace=self.namespace)
        return private & Q(namespace=self.namespace)

    def chroma_conditions(self) -> list[dict]:
        if self.namespace is None:
            scopes = [f"u:{self.user_id}", *(f"s:{name}" for name in self.shared)]
            return [{"scope": scopes[0]} if len(scopes) == 1 else {"scope": {"$in": scopes}}]
        if self.namespace in self.shared:
            return [{"scope": f"s:{self.namespace}"}]
        return [{"scope": f"u:{self.user_id}"}, {"namespace": self.namespace}]


def memory_scope(*, user, namespace: str | None = None) -> Scope:
    """The caller's scope. A shared namespace they were not granted answers exactly like
    a name that is not shared (their own private namespace of that name), so nobody can
    learn which shared namespaces exist by asking (a 404 used to tell them)."""
    shared = shared_namespaces_readable(user)
    staff_reads_it = user.is_staff and MemoryNamespace.objects.filter(name=namespace).exists()
    if namespace is not None and namespace not in shared and staff_reads_it:
        shared = [*shared, namespace]
    return Scope(user_id=user.pk, shared=shared, namespace=namespace)


def _alive(now: datetime) -> Q:
    return Q(deleted_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def memories_visible_to(user, *, namespace: str | None = None) -> QuerySet[Memory]:
    """Live (not deleted, not expired) memories the user may read."""
    scope = memory_scope(user=user, namespace=namespace)
    return Memory.objects.filter(scope.q() & _alive(timezone.now()))


def memory_list(*, user, namespace: str | None = None) -> QuerySet[Memory]:
    return memories_visible_to(user, namespace=namespace).select_related("owner").order_by("-created_at")


def memory_get(*, user, memory_id) -> Memory:
    """The memory if the caller may read it; anything else (someone else's, deleted,
    expired, no such id) is the same 404."""
    memory = memories_visible_to(user).filter(pk=memory_id).first()
    if memory is None:
        raise Http404("No such memory.")
    return memory


def memory_get_for_write(*, user, memory_id) -> Memory:
    """As memory_get; a shared memory the caller may only read is a 403."""
    memory = memory_get(user=user, memory_id=memory_id)
    if memory.shared and memory.namespace not in shared_namespaces_writable(user):
        from core.errors import Forbidden

        raise Forbidden("This memory is in a shared namespace you may only read.", code="permission_denied")
    return memory


def memory_history(*, memory: Memory) -> QuerySet[MemoryChange]:
    return MemoryChange.objects.filter(memory=memory).select_related("actor").order_by("version")


# --- search ------------------------------------------------------------------------------


@dataclass
class SearchHit:
    memory: Memory
    score: float
    similarity: float | None = None
    matched: list[str] = field(default_factory=list)


def _metadata_filtered(memories: QuerySet[Memory], filters: dict) -> QuerySet[Memory]:
    """Exact, typed equality on metadata keys (``{"year": 2024}`` does not match "2024")."""
    if not filters:
        return memories
    if connection.vendor == "postgresql":
        return memories.filter(metadata__contains=filters)  # jsonb @>
    # Aliased key transforms, so a key named like a lookup ("in", "contains") stays a key.
    aliases = {f"_meta_{i}": KeyTransform(key, "metadata") for i, key in enumerate(filters)}
    return memories.alias(**aliases).filter(**{f"_meta_{i}": value for i, value in enumerate(filters.values())})


def _chroma_metadata_conditions(filters: dict) -> list[dict]:
    # Only scalars live in Chroma's metadata; other filters apply in PostgreSQL alone.
    return [{f"m.{k}": v} for k, v in filters.items() if isinstance(v, (str, int, float, bool))]


def _keyword_terms(query: str) -> list[str]:
    return re.findall(r"\w+", query)[:32]


def _keyword_ranked(base: QuerySet[Memory], query: str, limit: int) -> list[str]:
    """Ids of the memories matching any of the query's words, best first.

    PostgreSQL: full-text search (english stemming, ts_rank) over the stored
    ``search_vector`` and its GIN index (migration 0003). Any word may match (OR), so a
    natural-language question still finds documents, and one with more of its words
    ranks higher.
    Elsewhere (SQLite, the laptop default): a case-insensitive substring match per word,
    ranked by how many words match; fine for a laptop's few thousand memories.
    """
    terms = _keyword_terms(query)
    if not terms:
        return []
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank

        ts_query = SearchQuery(" or ".join(terms), config="english", search_type="websearch")
        rows = (
            base.filter(search_vector=ts_query)
            .annotate(rank=SearchRank(F("search_vector"), ts_query))
            .order_by("-rank", "-created_at")
            .values_list("id", flat=True)[:limit]
        )
        return [str(i) for i in rows]
    words = terms[:8]
    any_word = Q()
    for word in words:
        any_word |= Q(text__icontains=word)
    candidates = list(base.filter(any_word).values_list("id", "text")[: limit * 10])
    scored = sorted(candidates, key=lambda row: -sum(w.lower() in row[1].lower() for w in words))
    return [str(i) for i, _ in scored[:limit]]


def memory_search(
    *,
    user,
    query: str,
    namespace: str | None = None,
    k: int = 10,
    min_score: float | None = None,
    filters: dict | None = None,
    mode: str = "hybrid",
) -> list[SearchHit]:
    """The ``k`` memories most relevant to ``query`` that the user may read, best first.

    1. Resolve the caller's scope (own private memories + granted shared namespaces).
    2. Vector side: embed the query (in-process, memory.embeddings) and ask Chroma for
       the nearest ``fetch`` vectors within the scope, unexpired, matching the scalar
       metadata filters. If Chroma is down the search goes on with the keyword side.
    3. Keyword side: full-text search in PostgreSQL over the same scope and filters.
    4. Fuse the two rankings with reciprocal rank fusion (score = sum of 1/(60 + rank)),
       normalised so that 1.0 means "first on every side"; ties go to the memory that
       both sides found, then to the best single rank.
    5. Load the winners from PostgreSQL (the truth) with the scope, expiry and metadata
       filters applied again, so a stale vector never returns a deleted, expired or
       re-scoped memory.

    ``score`` is the cosine similarity in "vector" mode and the fused score otherwise;
    ``similarity`` is the cosine similarity whenever the vector side found the memory.
    ``min_score`` drops results whose similarity is below it; a keyword match (the
    memory contains the query's words) is kept whatever its similarity.
    """
    filters = filters or {}
    scope = memory_scope(user=user, namespace=namespace)
    now = timezone.now()
    base = _metadata_filtered(Memory.objects.filter(scope.q() & _alive(now)), filters)
    fetch = min(max(k * 3, 30), 300)

    similarity: dict[str, float] = {}
    rankings: list[list[str]] = []
    if mode in ("hybrid", "vector"):
        where = chroma_where(
            [
                *scope.chroma_conditions(),
                {"expires_at": {"$gt": now.timestamp()}},
                *_chroma_metadata_conditions(filters),
            ]
        )
        try:
            hits = chroma_query(embedding=embed([query])[0].tolist(), n=fetch, where=where)
        except ChromaUnavailable as exc:
            logger.warning("vector search unavailable (%s); answering from full-text search", exc)
            hits = []
            if mode == "vector":
                mode = "keyword"
        similarity = {h.id: h.similarity for h in hits}
        rankings.append([h.id for h in hits])
    keyword: list[str] = []
    if mode in ("hybrid", "keyword"):
        keyword = _keyword_ranked(base, query, fetch)
        rankings.append(keyword)
    keyword_set = set(keyword)

    fused: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    sides: dict[str, int] = {}
    for ranking in rankings:
        for rank, memory_id in enumerate(ranking, start=1):
            fused[memory_id] = fused.get(memory_id, 0.0) + 1.0 / (RRF_K + rank)
            best_rank[memory_id] = min(best_rank.get(memory_id, rank), rank)
            sides[memory_id] = sides.get(memory_id, 0) + 1
    if min_score is not None:
        fused = {i: s for i, s in fused.items() if i in keyword_set or similarity.get(i, -1.0) >= min_score}
    order = sorted(fused, key=lambda i: (-fused[i], -sides[i], best_rank[i], i not in keyword_set))
    # Over-fetch a little: a few candidates may fail the PostgreSQL re-check (step 5).
    candidates = order[: k * 2 + 5]
    rows = {str(m.id): m for m in base.filter(id__in=candidates).select_related("owner")}
    perfect = len(rankings) / (RRF_K + 1)
    results = []
    for memory_id in candidates:
        memory = rows.get(memory_id)
        if memory is None:
            continue
        sim = similarity.get(memory_id)
        score = sim if mode == "vector" else fused[memory_id] / perfect
        matched = [name for name, hit in (("vector", sim is not None), ("keyword", memory_id in keyword_set)) if hit]
        results.append(SearchHit(memory=memory, score=round(score, 6), similarity=sim, matched=matched))
        if len(results) == k:
            break
    return results
