"""Property-based: every JSON endpoint answers hostile values with a 4xx, never a 5xx.

schemathesis (test_schemathesis.py) generates from the schema, so it rarely sends what
the schema does not describe; hypothesis here puts deep nesting, huge and non-finite
numbers, NaN/Infinity literals, NUL and lone surrogates, and very long strings into
every field of every JSON body (and the JSON query parameters of the memory search)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.models import Job
from jobs.reviews.gates import review_open
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


class Raw(str):
    """JSON text placed as is (a literal json.dumps would not write)."""


LEAVES = st.one_of(
    st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1" * 5000)]),
    st.just(Raw("[" * 3000 + "]" * 3000)),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**53, 2**63, -(2**63) - 1, 2**64, 1e308, -1e308, 5e-324, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
    st.text(max_size=20).map(lambda s: s + "\x00"),
    st.integers(min_value=10_000, max_value=400_000).map(lambda n: "x" * n),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
)
HOSTILE = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def dump(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dump(v) for k, v in value.items()) + "}"
    return json.dumps(value)  # ensure_ascii: a lone surrogate is written as its \\ud800 escape


BODIES = {
    ("post", "/auth/token"): ['@', '{"username": @, "password": @, "name": @, "expires_in": @}'],
    ("post", "/jobs"): [
        "@",
        '{"requirements": @, "plan": {"tasks": [{"key": "a", "agent": "echo"}]}, "priority": @, "metadata": @}',
        '{"plan": {"tasks": [{"key": "a", "agent": "echo", "input": {"x": @}, "max_attempts": @, "timeout": @}]}}',
        '{"plan": {"tasks": [{"key": @, "agent": @, "depends_on": @, "review": @}]}, "review_plan": @}',
        ('{"plan": {"tasks": [{"key": "a", "agent": "echo", "review": "after", "gate": {"assignee": @, "group": @,'
        ' "deadline": @, "default": @, "max_rejections": @}}]}}'),
        ('{"plan": {"tasks": [{"key": "a", "agent": "echo"}]}, "budget": {"max_tasks": @, "max_tokens": @,'
        ' "deadline_seconds": @}, "remember": @}'),
    ],
    ("post", "/memory/store"): ['@', '{"text": @, "namespace": @, "metadata": {"k": @}, "ttl": @}', '{"text": "t", "metadata": @}'],
    ("post", "/memory/batch"): ['{"memories": [{"text": @, "ttl": @, "metadata": @}]}', '{"memories": @}'],
    ("patch", "/memory/{memory}"): ['{"text": @, "ttl": @, "metadata": @, "namespace": @}', "@"],
    ("post", "/reviews/{review}/decision"): [
        '{"decision": @, "comment": @, "output": @, "answer": @}', '{"decision": "edit", "plan": @}', "@",
    ],
    ("post", "/agents"): [
        ('{"name": @, "kind": "http", "url": "http://127.0.0.1:9/", "secret": "s", "timeout": @, "retry_backoff": @,'
        ' "concurrency": @, "max_attempts": @, "breaker_fail_max": @}'),
        "@",
    ],
}  # fmt: skip
SEARCH_PARAMS = ["q", "k", "min_score", "mode", "namespace", "filter", "metadata.topic"]


@pytest.fixture
def world():
    owner = make_user("fuzzer", staff=True)  # staff: /agents and every review are in reach too
    client = client_for(owner)
    job = Job.objects.get(
        pk=client.post("/jobs", {"plan": {"tasks": [{"key": "a", "agent": "echo"}]}}, format="json").json()["id"]
    )
    review = review_open(job_id=job.id, kind="plan", proposed=job.plan, events=[])
    memory = client.post("/memory/store", {"text": "a memory"}, format="json").json()["id"]
    return client, {"memory": memory, "review": str(review.id)}


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize(("method", "path"), list(BODIES), ids=[f"{m} {p}" for m, p in BODIES])
@FUZZ
@given(data=st.data())
def test_hostile_json_bodies_never_get_a_5xx(world, method, path, data):
    client, ids = world
    template = data.draw(st.sampled_from(BODIES[(method, path)]))
    body = template
    while "@" in body:
        body = body.replace("@", dump(data.draw(HOSTILE)), 1)
    response = getattr(client, method)(path.format(**ids), body, content_type="application/json")
    assert response.status_code < 500, (path, body[:300], response.content[:300])


@FUZZ
@given(params=st.dictionaries(st.sampled_from(SEARCH_PARAMS), HOSTILE.map(dump), min_size=1))
def test_hostile_json_query_parameters_never_get_a_5xx(world, params):
    client, _ = world
    params = {k: v.replace("\x00", "") for k, v in params.items()}  # a URL cannot carry NUL anyway
    params.setdefault("q", "memory")
    response = client.get("/memory/search", params)
    assert response.status_code < 500, (params, response.content[:300])
