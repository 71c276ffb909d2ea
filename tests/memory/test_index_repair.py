"""PostgreSQL is the truth: Chroma's index can be lost or miss writes and is rebuilt or
repaired from PostgreSQL, never losing a memory."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from memory.chroma import chroma_disconnect, chroma_ids, chroma_reset
from memory.models import Memory
from tests.memory.conftest import search

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chroma_outage(settings):
    """``with chroma_outage():`` points every Chroma call at a port where nothing listens."""
    from contextlib import contextmanager

    @contextmanager
    def outage():
        real = settings.CHROMA_URL
        settings.CHROMA_URL = "http://127.0.0.1:8119"
        chroma_disconnect()
        try:
            yield
        finally:
            settings.CHROMA_URL = real
            chroma_disconnect()

    return outage


def test_memory_reindex_rebuilds_the_index_after_chromas_data_is_wiped(alice, remember):
    kept = [remember(alice, text) for text in ("Tea is kept in the top cupboard.", "Coffee beans are in the freezer.")]
    deleted = remember(alice, "The old kettle is broken.")
    alice.delete(f"/memory/{deleted}")

    chroma_reset()  # Chroma's data is gone
    assert search(alice, "where is the tea", mode="vector") == []

    call_command("memory_reindex")

    assert search(alice, "where is the tea", mode="vector")[0]["id"] == kept[0]
    assert chroma_ids(ids=[*kept, deleted]) == set(kept)
    assert not Memory.objects.filter(indexed_at__isnull=True).exists()


def test_a_write_while_chroma_is_down_is_kept_found_by_keywords_and_repaired(alice, remember, chroma_outage):
    with chroma_outage():
        memory_id = remember(alice, "The spare key is under the blue flowerpot.")
        assert Memory.objects.get(pk=memory_id).indexed_at is None  # in PostgreSQL, not in Chroma
        results = search(alice, "spare key flowerpot")  # the vector side is down: still no 5xx
        assert [r["id"] for r in results] == [memory_id]
        assert results[0]["matched"] == ["keyword"]

    call_command("memory_reindex", "--pending")

    assert Memory.objects.get(pk=memory_id).indexed_at is not None
    assert search(alice, "where can I find a key to get in", mode="vector")[0]["id"] == memory_id


def test_the_next_successful_write_repairs_what_an_outage_missed(alice, remember, chroma_outage):
    with chroma_outage():
        missed = remember(alice, "The printer on floor 3 needs A4 paper only.")

    remember(alice, "Unrelated: the plants are watered on Mondays.")

    assert Memory.objects.get(pk=missed).indexed_at is not None
    assert search(alice, "which paper does the printer take", mode="vector")[0]["id"] == missed


def test_memory_reindex_fails_loudly_while_chroma_is_down(alice, remember, chroma_outage):
    remember(alice, "Something to index.")
    with chroma_outage(), pytest.raises(CommandError, match="chroma"):
        call_command("memory_reindex")
