"""One JSON policy for every body and JSON query parameter (core/json_policy.py):
deep nesting, non-finite numbers and integers beyond 2^53-1 are 400s naming the field,
never a 500, never stored; memory metadata Chroma cannot hold is refused when stored, and
a bad row already in PostgreSQL does not stop re-indexing for everybody."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from memory.models import Memory
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db(transaction=True)

ECHO_PLAN = {"tasks": [{"key": "a", "agent": "echo"}]}


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deep_nesting_on_the_unauthenticated_token_endpoint_is_a_400_not_a_500(security_web):
    status, _, body = security_web.call("POST", "/auth/token", raw=('{"username": ' + deep(100_000) + "}").encode())
    assert status == 400, body
    assert body["error"] == "parse_error"
    assert "nested deeper" in body["detail"]


def test_nesting_beyond_the_policy_depth_is_refused_even_below_pythons_recursion_limit(alice):
    response = alice.post(
        "/jobs", '{"plan": {"tasks": []}, "metadata": {"x": ' + deep(80) + "}}", content_type="application/json"
    )
    assert response.status_code == 400
    assert any(path.startswith("metadata.x") for path in response.json()["fields"])


@pytest.mark.parametrize(
    ("metadata", "field"),
    [('{"big": 1e999}', "metadata.big"), ('{"n": NaN}', "metadata.n"), ('{"n": -Infinity}', "metadata.n")],
    ids=["overflow-to-infinity", "nan", "infinity"],
)
def test_non_finite_numbers_are_a_400_naming_the_field(security_web, metadata, field):
    token = client_for(make_user("nina"))._credentials["HTTP_AUTHORIZATION"]
    raw = ('{"plan": {"tasks": [{"key": "a", "agent": "echo"}]}, "metadata": ' + metadata + "}").encode()
    status, _, body = security_web.call("POST", "/jobs", raw=raw, headers={"Authorization": token})
    assert status == 400, body
    assert field in body["fields"]


def test_an_integer_beyond_the_safe_range_is_a_400_naming_the_field_and_nothing_is_stored(alice):
    body = {"plan": {"tasks": [{"key": "a", "agent": "echo", "input": {"n": 2**64}}]}}
    response = alice.post("/jobs", body, format="json")
    assert response.status_code == 400
    assert "plan.tasks[0].input.n" in response.json()["fields"]
    assert alice.post("/jobs", {"plan": ECHO_PLAN, "metadata": {"n": 2**53 - 1}}, format="json").status_code == 201


def test_a_json_query_parameter_follows_the_same_policy(alice):
    for params in ({"q": "x", "metadata.n": "1e999"}, {"q": "x", "filter": '{"n": ' + str(2**70) + "}"}):
        response = alice.get("/memory/search", params)
        assert response.status_code == 400, response.json()
        assert set(response.json()["fields"]) & {"metadata.n", "filter.n"}


def test_memory_metadata_chroma_cannot_hold_is_refused_at_store_time(alice):
    response = alice.post("/memory/store", {"text": "t", "metadata": {"n": 2**60 * 16}}, format="json")
    assert response.status_code == 400
    assert "metadata.n" in response.json()["fields"]
    assert not Memory.objects.exists()


def test_a_deeply_nested_plan_in_the_dashboard_form_is_an_error_on_the_page(alice):
    from django.test import Client

    browser = Client()
    browser.force_login(alice.user)
    response = browser.post("/app/jobs/new", {"requirements": "r", "plan": deep(100_000)})
    assert response.status_code in (200, 400)
    assert b"nested deeper" in response.content


def test_reindex_and_repair_skip_a_row_chroma_refuses_report_it_and_index_the_rest(alice, remember, capsys):
    from memory.chroma import chroma_ids

    good = remember(alice, "The ladder is in the garage.")
    # A row stored before the store-time check existed (jsonb takes any integer).
    bad = Memory.objects.create(owner=alice.user, text="The rake is in the shed.", metadata={"n": 2**70})
    Memory.objects.filter(pk=good).update(indexed_at=None)

    call_command("memory_reindex", "--pending")

    err = capsys.readouterr().err
    assert f"skipped memory {bad.id}" in err
    assert Memory.objects.get(pk=good).indexed_at is not None
    assert chroma_ids(ids=[good, str(bad.id)]) == {good}

    call_command("memory_reindex")  # the full rebuild goes on past it too
    assert chroma_ids(ids=[good]) == {good}


def test_an_agent_storing_metadata_chroma_cannot_hold_is_refused_too(alice):
    # ctx.memory_store reaches the service without the API's parser in between.
    from core.errors import ApplicationError
    from memory.services import memory_store

    with pytest.raises(ApplicationError) as refused:
        memory_store(owner=alice.user, text="t", metadata={"n": 2**70})
    assert "metadata.n" in refused.value.fields
    assert not Memory.objects.exists()
