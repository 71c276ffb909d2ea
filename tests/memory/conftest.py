"""Memory tests run against the real Chroma server (``chroma_server``) and PostgreSQL.

They commit (``transaction=True``) because memories reach Chroma on commit, exactly as
in production.
"""

from __future__ import annotations

import pytest

from tests.conftest import client_for, make_user


@pytest.fixture(scope="session")
def memory_index(chroma_server):
    """An empty memory collection for this session (the server may be reused)."""
    from memory.chroma import chroma_reset

    chroma_reset()
    return chroma_server


@pytest.fixture
def remember(memory_index):
    """``remember(client, text, **fields)`` stores one memory through the API; its id."""

    def store(client, text: str, **fields) -> str:
        response = client.post("/memory/store", {"text": text, **fields}, format="json")
        assert response.status_code == 201, response.json()
        return response.json()["id"]

    return store


def search(client, q: str, **params) -> list[dict]:
    response = client.get("/memory/search", {"q": q, **params})
    assert response.status_code == 200, response.json()
    return response.json()["results"]


@pytest.fixture
def carol(db):
    return client_for(make_user("carol"))
