"""Operators manage shared namespaces (and who may read or write them) and can read
every memory with its history here."""

from __future__ import annotations

from django.contrib import admin

from memory.models import Memory, MemoryChange, MemoryNamespace, NamespaceGrant


class NamespaceGrantInline(admin.TabularInline):
    model = NamespaceGrant
    extra = 1
    autocomplete_fields = ["user", "group"]


@admin.register(MemoryNamespace)
class MemoryNamespaceAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]
    inlines = [NamespaceGrantInline]


class MemoryChangeInline(admin.TabularInline):
    model = MemoryChange
    extra = 0
    can_delete = False
    fields = ["version", "action", "text", "namespace", "metadata", "expires_at", "actor", "at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "namespace",
        "shared",
        "short_text",
        "created_at",
        "expires_at",
        "deleted_at",
        "indexed_at",
    ]
    list_filter = ["shared", "namespace"]
    search_fields = ["text", "owner__username", "namespace"]
    list_select_related = ["owner"]
    readonly_fields = ["id", "owner", "version", "created_at", "updated_at", "deleted_at", "indexed_at", "shared"]
    inlines = [MemoryChangeInline]

    @admin.display(description="text")
    def short_text(self, memory: Memory) -> str:
        return memory.text[:80]

    def has_change_permission(self, request, obj=None) -> bool:
        # Edits go through the API so they get a history entry and reach Chroma.
        return False
