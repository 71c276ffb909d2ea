"""No oracles: gate validation does not tell which usernames or groups exist (a user may
assign a gate to themselves or to a group they belong to; staff to anyone), and a shared
namespace one was not granted answers exactly like a name nobody shares."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from memory.models import MemoryNamespace
from tests.conftest import make_user, plan

pytestmark = pytest.mark.django_db


def gated(**gate) -> dict:
    return {"plan": plan({"key": "draft", "agent": "draft", "review": "after", "gate": gate})}


def test_naming_someone_else_or_nobody_as_assignee_gets_the_same_refusal(alice):
    make_user("ada")
    real = alice.post("/jobs", gated(assignee="ada"), format="json")
    ghost = alice.post("/jobs", gated(assignee="nobody-at-all"), format="json")
    assert real.status_code == ghost.status_code == 400
    assert real.json() == ghost.json()
    assert "plan.tasks[0].gate.assignee" in real.json()["fields"]


def test_naming_a_group_one_is_not_in_or_no_group_gets_the_same_refusal(alice):
    Group.objects.create(name="payroll")
    real = alice.post("/jobs", gated(group="payroll"), format="json")
    ghost = alice.post("/jobs", gated(group="no-such-group"), format="json")
    assert real.status_code == ghost.status_code == 400
    assert real.json() == ghost.json()


def test_oneself_and_ones_own_groups_may_be_named(alice):
    editors = Group.objects.create(name="editors")
    alice.user.groups.add(editors)
    response = alice.post("/jobs", gated(assignee="alice", group="editors"), format="json")
    assert response.status_code == 201, response.json()


def test_an_ungranted_shared_namespace_answers_like_a_missing_one(alice, bob, remember):
    MemoryNamespace.objects.create(name="board-minutes")
    remember(alice, "The board approved the merger.", namespace="board-minutes")  # alice is not granted either
    answers = {}
    for namespace in ("board-minutes", "no-such-namespace"):
        stored = bob.post("/memory/store", {"text": "my note", "namespace": namespace}, format="json")
        found = bob.get("/memory/search", {"q": "merger approved", "namespace": namespace, "mode": "keyword"})
        listed = bob.get("/memory", {"namespace": namespace})
        answers[namespace] = (stored.status_code, found.status_code, listed.status_code)
        assert all(r["text"] == "my note" for r in found.json()["results"])
    assert answers["board-minutes"] == answers["no-such-namespace"] == (201, 200, 200)
