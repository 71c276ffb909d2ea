"""Memory URLs: the REST API and the /app/memory page. Paths work with or without a
trailing slash, like the rest of the API."""

from __future__ import annotations

from django.urls import re_path

from memory.pages import memory_delete_page, memory_page
from memory.views import (
    MemoryBatchStoreView,
    MemoryDetailView,
    MemoryHistoryView,
    MemoryListView,
    MemorySearchView,
    MemoryStoreView,
)

MEMORY_ID = r"(?P<memory_id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"

urlpatterns = [
    re_path(r"^memory/?$", MemoryListView.as_view(), name="memory-list"),
    re_path(r"^memory/store/?$", MemoryStoreView.as_view(), name="memory-store"),
    re_path(r"^memory/batch/?$", MemoryBatchStoreView.as_view(), name="memory-batch"),
    re_path(r"^memory/search/?$", MemorySearchView.as_view(), name="memory-search"),
    re_path(rf"^memory/{MEMORY_ID}/?$", MemoryDetailView.as_view(), name="memory-detail"),
    re_path(rf"^memory/{MEMORY_ID}/history/?$", MemoryHistoryView.as_view(), name="memory-history"),
    re_path(r"^app/memory/?$", memory_page, name="app-memory"),
    re_path(rf"^app/memory/{MEMORY_ID}/delete/?$", memory_delete_page, name="app-memory-delete"),
]
