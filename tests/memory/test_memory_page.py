"""The /app/memory page: search with scores and provenance, delete, session login."""

from __future__ import annotations

import pytest
from django.test import Client

from memory.models import Memory
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser(alice):
    client = Client()
    client.force_login(alice.user)
    return client


def test_the_page_needs_a_login(memory_index):
    response = Client().get("/app/memory")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_page_shows_results_with_score_and_provenance(browser, alice, remember):
    remember(
        alice,
        "The boiler service is booked for 12 May.",
        metadata={"job": "0b1c2d3e-1111-2222-3333-444455556666", "task_key": "plan"},
    )

    page = browser.get("/app/memory", {"q": "when is the heating maintenance"}).content.decode()

    assert "The boiler service is booked for 12 May." in page
    assert "/app/jobs/0b1c2d3e-1111-2222-3333-444455556666" in page and "task plan" in page
    assert 'class="score"' in page and "1 result" in page


def test_the_page_lists_recent_memories_without_a_query_and_never_anothers(browser, alice, remember):
    bob = make_user("bobby")
    Memory.objects.create(owner=bob, text="bobby's private note")
    remember(alice, "alice's note")

    page = browser.get("/app/memory").content.decode()

    assert "alice&#x27;s note" in page and "bobby" not in page


def test_delete_from_the_page_removes_the_memory(browser, alice, remember):
    memory_id = remember(alice, "Delete me from the page.")

    response = browser.post(f"/app/memory/{memory_id}/delete", {"next": "/app/memory?q=delete"})

    assert response.status_code == 302 and response["Location"] == "/app/memory?q=delete"
    assert Memory.objects.get(pk=memory_id).deleted_at is not None
    assert "Delete me from the page." not in browser.get("/app/memory", {"q": "delete me"}).content.decode()
