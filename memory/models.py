"""Memory records (the truth), their history, and staff-managed shared namespaces.

PostgreSQL holds every memory and every change to it; Chroma holds only the vectors and
can be rebuilt from here. ``indexed_at`` is NULL while Chroma does not yet reflect the
row's current version (new, edited, deleted, or a Chroma write that failed): the
indexer sets it with a conditional UPDATE on ``version``, so an edit that lands while an
older version is being indexed stays marked and is indexed again.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q

DEFAULT_NAMESPACE = "default"
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"


class MemoryNamespace(models.Model):
    """A namespace shared between users; created by staff, granted to users or groups.

    A namespace name that is not one of these is private: each user has their own
    ``default`` (or ``notes``, ...) that nobody else sees.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class NamespaceGrant(models.Model):
    """Who may read (and, with ``can_write``, store, edit and delete in) a shared namespace."""

    namespace = models.ForeignKey(MemoryNamespace, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="memory_grants"
    )
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="memory_grants")
    can_write = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="namespace_grant_user_xor_group",
            ),
            models.UniqueConstraint(fields=["namespace", "user"], name="namespace_grant_user_once"),
            models.UniqueConstraint(fields=["namespace", "group"], name="namespace_grant_group_once"),
        ]

    def __str__(self) -> str:
        who = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{self.namespace} -> {who} ({'read/write' if self.can_write else 'read'})"


class Memory(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories")
    namespace = models.CharField(max_length=100, default=DEFAULT_NAMESPACE)
    # True when ``namespace`` is a MemoryNamespace: readers are its grantees, not the owner only.
    shared = models.BooleanField(default=False)
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Soft delete: the row stays for its history; Chroma drops the vector.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # NULL = Chroma does not reflect this version yet (see the module docstring).
    indexed_at = models.DateTimeField(null=True, blank=True)
    # The text's full-text vector (english), kept by memory.services on PostgreSQL, so that
    # ranking a keyword search reads it instead of re-parsing every matching text.
    search_vector = SearchVectorField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # GET /memory and search hydration: a user's private memories, newest first.
            models.Index(fields=["owner", "namespace", "-created_at"], name="memory_owner_ns_created"),
            # Search and list over a shared namespace.
            models.Index(fields=["namespace", "-created_at"], name="memory_shared_ns", condition=Q(shared=True)),
            # The repair pass (memory_index_pending): rows Chroma does not reflect yet.
            models.Index(fields=["updated_at"], name="memory_unindexed", condition=Q(indexed_at__isnull=True)),
            # retention.services: memories whose TTL ran out, oldest first.
            models.Index(fields=["expires_at"], name="memory_expiring", condition=Q(expires_at__isnull=False)),
            # The full-text GIN index on search_vector is created in migration 0003, on
            # PostgreSQL only (SQLite has no GIN; search falls back to a keyword match).
        ]

    def __str__(self) -> str:
        return f"memory {self.id} ({self.namespace})"


class MemoryChange(models.Model):
    """One version of a memory as it was written: never updated, never deleted."""

    class Action(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"

    memory = models.ForeignKey(Memory, on_delete=models.CASCADE, related_name="changes", db_index=False)
    version = models.PositiveIntegerField()
    action = models.CharField(max_length=10, choices=Action.choices)
    text = models.TextField()
    namespace = models.CharField(max_length=100)
    metadata = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["memory", "version"]
        constraints = [
            # GET /memory/{id}/history reads by this index.
            models.UniqueConstraint(fields=["memory", "version"], name="memory_change_version"),
            models.CheckConstraint(
                condition=Q(action__in=["created", "updated", "deleted"]), name="memory_change_action"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.memory_id} v{self.version} {self.action}"
