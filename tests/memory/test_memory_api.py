"""Memory over REST against a real Chroma server and PostgreSQL: store, search (vector,
keyword, hybrid), scoping, filters, edits with history, delete, TTL, batch, bad input."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Group

from memory.models import Memory, MemoryNamespace, NamespaceGrant
from tests.conftest import client_for, make_user
from tests.memory.conftest import search

pytestmark = pytest.mark.django_db(transaction=True)

NOTES = {
    "refund": "The customer Maria asked for a refund because her parcel arrived damaged.",
    "office": "Our Berlin office moves to a new building on Friedrichstrasse in March.",
    "backup": "Postgres backups run nightly at 02:00 UTC and are kept for 30 days.",
    "blog": "The marketing team prefers short blog posts with one chart each.",
    "deploy": "Deploys to production need approval from two engineers.",
    "lunch": "Team lunch is on Thursdays at the Italian place around the corner.",
}

PARAPHRASES = {
    "client wants her money back for a broken delivery": "refund",
    "how often is the database saved, and for how long?": "backup",
    "relocation of the German branch": "office",
    "who has to sign off a release?": "deploy",
    "what kind of articles does marketing like": "blog",
}


@pytest.fixture
def notes(alice, remember):
    return {key: remember(alice, text) for key, text in NOTES.items()}


def test_a_reworded_query_finds_the_memory_it_paraphrases(alice, notes):
    for query, key in PARAPHRASES.items():
        for mode in ("hybrid", "vector"):
            results = search(alice, query, k=3, mode=mode)
            assert results[0]["id"] == notes[key], (mode, query, [r["text"] for r in results])


def test_results_come_best_first_with_score_metadata_namespace_and_time(alice, remember):
    stored = remember(alice, "The staging server is called bluefin.", metadata={"kind": "infra"})
    remember(alice, "Bananas are rich in potassium.")

    results = search(alice, "name of the staging machine", k=2)

    assert results[0]["id"] == stored
    first = results[0]
    assert set(first) >= {"id", "text", "score", "metadata", "namespace", "created_at"}
    assert first["metadata"] == {"kind": "infra"} and first["namespace"] == "default"
    assert first["text"] == "The staging server is called bluefin."
    assert results[0]["score"] >= results[1]["score"]
    assert 0 < first["similarity"] <= 1


def test_k_limits_the_results_and_min_score_drops_weak_matches(alice, notes):
    assert len(search(alice, "anything at all", k=2)) == 2
    strong = search(alice, "refund for a damaged parcel", min_score=0.5, mode="vector")
    assert [r["id"] for r in strong] == [notes["refund"]]


def test_a_users_search_never_returns_another_users_memory(alice, bob, remember):
    mine = remember(alice, "My locker code is 4471.")
    remember(alice, "Team handbook lives in the wiki.", namespace="work")
    remember(bob, "Bob's locker code is 9902.")

    for params in ({}, {"namespace": "default"}, {"namespace": "work"}, {"mode": "vector"}, {"mode": "keyword"}):
        assert all("Bob" not in r["text"] for r in search(alice, "locker code", **params)), params
    assert [r["text"] for r in search(bob, "locker code", k=10)] == ["Bob's locker code is 9902."]
    assert search(bob, "handbook wiki", namespace="work") == []

    for method in ("get", "patch", "delete"):
        response = getattr(bob, method)(f"/memory/{mine}", {"text": "x"} if method == "patch" else None, format="json")
        assert response.status_code == 404, (method, response.content)
        assert response.json()["error"] == "not_found"
    assert Memory.objects.get(pk=mine).text == "My locker code is 4471."


def test_namespaces_keep_a_users_memories_apart(alice, remember):
    work = remember(alice, "The quarterly report is due on the 5th.", namespace="work")
    home = remember(alice, "The quarterly water bill is due on the 5th.", namespace="home")

    assert [r["id"] for r in search(alice, "quarterly due date", namespace="work")] == [work]
    assert [r["id"] for r in search(alice, "quarterly due date", namespace="home")] == [home]
    assert {r["id"] for r in search(alice, "quarterly due date")} == {work, home}


def test_a_shared_namespace_is_read_by_its_grantees_and_written_by_writers_only(alice, bob, carol, remember):
    handbook = MemoryNamespace.objects.create(name="handbook")
    NamespaceGrant.objects.create(namespace=handbook, user=alice.user, can_write=True)
    NamespaceGrant.objects.create(namespace=handbook, user=bob.user)
    readers = Group.objects.create(name="readers")
    NamespaceGrant.objects.create(namespace=handbook, group=readers)
    dave = client_for(make_user("dave"))
    dave.user.groups.add(readers)

    shared = remember(alice, "Expense reports are approved by the finance lead.", namespace="handbook")

    for reader in (bob, dave):
        assert [r["id"] for r in search(reader, "who approves expenses")][:1] == [shared]
        assert [r["id"] for r in search(reader, "who approves expenses", namespace="handbook")] == [shared]
        assert reader.get(f"/memory/{shared}").status_code == 200
    refused = bob.post("/memory/store", {"text": "x", "namespace": "handbook"}, format="json")
    assert refused.status_code == 403 and "namespace" in refused.json()["fields"]
    assert bob.delete(f"/memory/{shared}").status_code == 403

    assert search(carol, "who approves expenses") == []
    # Not granted: "handbook" is carol's own private namespace, as any unshared name is.
    assert search(carol, "expenses", namespace="handbook") == []
    assert carol.get(f"/memory/{shared}").status_code == 404
    assert carol.post("/memory/store", {"text": "x", "namespace": "handbook"}, format="json").status_code == 201


def test_metadata_filters_narrow_the_search(alice, remember):
    billing = remember(alice, "Customer asked about a late payment fee.", metadata={"topic": "billing", "year": 2024})
    old = remember(alice, "Customer asked about a late payment fee.", metadata={"topic": "billing", "year": 2023})
    shipping = remember(alice, "Customer asked about a late parcel.", metadata={"topic": "shipping", "year": 2024})

    def ids(**params):
        return {r["id"] for r in search(alice, "customer asked about something late", **params)}

    assert ids() == {billing, old, shipping}
    assert ids(**{"metadata.topic": "billing"}) == {billing, old}
    assert ids(**{"metadata.topic": "billing", "metadata.year": "2024"}) == {billing}
    assert ids(filter='{"year": 2023}') == {old}
    assert ids(filter='{"year": "2023"}') == set()  # typed: the string is not the number
    assert ids(**{"metadata.topic": "nothing"}) == set()


def test_a_deleted_memory_is_gone_from_search_and_the_api_but_kept_in_history(alice, remember):
    doomed = remember(alice, "The wifi password is hunter2.")
    assert search(alice, "wifi password")[0]["id"] == doomed

    assert alice.delete(f"/memory/{doomed}").status_code == 204

    for mode in ("hybrid", "vector", "keyword"):
        assert doomed not in {r["id"] for r in search(alice, "wifi password", mode=mode)}
    assert alice.get(f"/memory/{doomed}").status_code == 404
    assert alice.delete(f"/memory/{doomed}").status_code == 404
    assert doomed not in {m["id"] for m in alice.get("/memory").json()["results"]}
    memory = Memory.objects.get(pk=doomed)
    assert [c.action for c in memory.changes.order_by("version")] == ["created", "deleted"]
    assert memory.indexed_at is not None  # the vector was dropped from Chroma as well


def test_an_expired_memory_disappears_from_search(alice, remember):
    fleeting = remember(alice, "The door code for today is 5521.", ttl=1)
    lasting = remember(alice, "The door code for the garage is 7788.")
    assert {r["id"] for r in search(alice, "door code")} >= {fleeting, lasting}
    assert alice.get(f"/memory/{fleeting}").json()["expires_at"] is not None

    time.sleep(1.2)

    for mode in ("hybrid", "vector", "keyword"):
        assert [r["id"] for r in search(alice, "door code", mode=mode)] == [lasting], mode
    assert alice.get(f"/memory/{fleeting}").status_code == 404


def test_an_edit_is_searchable_at_once_and_the_old_version_stays_in_history(alice, remember):
    note = remember(alice, "The project kickoff is on Monday.", metadata={"project": "apollo"})

    response = alice.patch(
        f"/memory/{note}", {"text": "The project kickoff moved to Wednesday afternoon."}, format="json"
    )

    assert response.status_code == 200 and response.json()["version"] == 2
    assert response.json()["metadata"] == {"project": "apollo"}
    assert search(alice, "kickoff moved to Wednesday", mode="vector")[0]["text"].endswith("Wednesday afternoon.")
    history = alice.get(f"/memory/{note}/history").json()["history"]
    assert [(h["version"], h["action"], h["text"]) for h in history] == [
        (1, "created", "The project kickoff is on Monday."),
        (2, "updated", "The project kickoff moved to Wednesday afternoon."),
    ]
    assert history[1]["actor"] == "alice"


def test_a_keyword_query_for_an_invoice_number_is_missed_by_vectors_but_found_by_hybrid(alice, memory_index):
    # Thirty invoices whose numbers differ from the one asked for by a digit or two:
    # to an embedding they all look alike; only the exact number tells them apart.
    batch = [
        {"text": f"Invoice INV-2024-00{900 + i} for office supplies from vendor {i} was paid."}
        for i in range(40)
        if i != 17
    ]
    batch.append({"text": "Payment reference INV-2024-00917 cleared for the Lisbon warehouse lease."})
    ids = alice.post("/memory/batch", {"memories": batch}, format="json").json()["ids"]
    target = ids[-1]

    vector = search(alice, "INV-2024-00917", k=5, mode="vector")
    hybrid = search(alice, "INV-2024-00917", k=5)

    assert target not in [r["id"] for r in vector]
    assert hybrid[0]["id"] == target
    assert "keyword" in hybrid[0]["matched"]


def test_a_batch_is_stored_whole_or_not_at_all(alice, memory_index):
    good = alice.post("/memory/batch", {"memories": [{"text": "one"}, {"text": "two", "ttl": 60}]}, format="json")
    assert good.status_code == 201 and len(good.json()["ids"]) == 2

    bad = alice.post("/memory/batch", {"memories": [{"text": "three"}, {"text": ""}]}, format="json")

    assert bad.status_code == 400
    assert "memories[1].text" in bad.json()["fields"]
    assert Memory.objects.filter(owner=alice.user).count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": 5}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 20_001}, "text"),
        ({"text": "ok", "namespace": "no spaces please"}, "namespace"),
        ({"text": "ok", "namespace": ""}, "namespace"),
        ({"text": "ok", "metadata": ["not", "an", "object"]}, "metadata"),
        ({"text": "ok", "ttl": 0}, "ttl"),
        ({"text": "ok", "ttl": "60"}, "ttl"),
    ],
)
def test_a_bad_store_is_a_400_naming_the_field(alice, memory_index, body, field):
    response = alice.post("/memory/store", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not Memory.objects.exists()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "x", "k": "0"}, "k"),
        ({"q": "x", "k": "many"}, "k"),
        ({"q": "x", "min_score": "2"}, "min_score"),
        ({"q": "x", "mode": "psychic"}, "mode"),
        ({"q": "x", "filter": "[1]"}, "filter"),
        ({"q": "x", "metadata.a b": "1"}, "metadata.a b"),
    ],
)
def test_a_bad_search_is_a_400_naming_the_parameter(alice, memory_index, params, field):
    response = alice.get("/memory/search", params)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_the_api_needs_a_token_and_works_with_or_without_trailing_slash(alice, remember, client):
    remember(alice, "slash test")
    assert client.get("/memory/search", {"q": "x"}).status_code in (401, 403)
    assert alice.get("/memory/search/", {"q": "slash"}).status_code == 200
    assert alice.post("/memory/store/", {"text": "with slash"}, format="json").status_code == 201
    assert alice.get("/memory/").status_code == 200


def test_the_list_is_the_callers_own_newest_first_and_paginated(alice, bob, remember):
    for i in range(3):
        remember(alice, f"note {i}")
    remember(bob, "bob's note")

    page = alice.get("/memory").json()

    assert page["count"] == 3
    assert [m["text"] for m in page["results"]] == ["note 2", "note 1", "note 0"]
