"""Memory in the pipeline: agents search and store through their context, and a job
submitted with "remember": true leaves its outputs in its owner's memory."""

from __future__ import annotations

import pytest

from jobs.lifecycle import job_advance
from jobs.models import Task
from memory.models import Memory
from tests.conftest import job_wait, plan, wait_for
from tests.memory.conftest import search
from workers.context import AgentContext

pytestmark = pytest.mark.django_db(transaction=True)


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_job_with_remember_stores_its_final_outputs_with_provenance(pipeline, memory_index, alice, bob):
    job_id = submit(
        alice,
        {
            "remember": True,
            "plan": plan(
                {"key": "research", "agent": "echo", "input": {"text": "Lisbon warehouse rent is 4,200 EUR a month"}},
                {"key": "report", "agent": "echo", "depends_on": ["research"], "input": {"final": True}},
            ),
        },
    )
    assert alice.get(f"/jobs/{job_id}").json()["remember"] is True
    assert job_wait(job_id).status == "succeeded"

    memory = wait_for(
        lambda: Memory.objects.filter(owner=alice.user, metadata__job=job_id).first(), message="the job's memory"
    )
    report = Task.objects.get(job_id=job_id, key="report")
    assert memory.metadata == {
        "source": "job", "job": job_id, "task": str(report.id), "task_key": "report", "agent": "echo",
    }  # fmt: skip
    assert Memory.objects.filter(metadata__job=job_id).count() == 1  # final tasks only
    wait_for(lambda: Memory.objects.get(pk=memory.pk).indexed_at, message="the memory to reach chroma")
    assert search(alice, "how much is the rent for the warehouse in Lisbon?")[0]["id"] == str(memory.id)
    assert search(bob, "warehouse rent Lisbon") == []


def test_a_job_without_remember_leaves_no_memory(pipeline, memory_index, alice):
    job_id = submit(alice, {"plan": plan({"key": "a", "agent": "echo", "input": {"text": "forget me"}})})
    assert job_wait(job_id).status == "succeeded"
    assert not Memory.objects.filter(metadata__job=job_id).exists()


def test_remember_must_be_a_boolean(alice):
    response = alice.post("/jobs", {"remember": "yes", "plan": plan({"key": "a", "agent": "echo"})}, format="json")
    assert response.status_code == 400 and "remember" in response.json()["fields"]


def test_an_agent_stores_and_searches_the_job_owners_memory_through_its_context(memory_index, alice, bob, remember):
    remember(alice, "Supplier Nordwind delivers on Tuesdays and Fridays.")
    remember(bob, "Supplier Nordwind is bob's secret.")
    job_id = submit(alice, {"plan": plan({"key": "plan-deliveries", "agent": "echo"})})
    job_advance(job_id)  # the orchestrator's own step writes the task rows (or a running one did)
    task = wait_for(lambda: Task.objects.select_related("job").filter(job_id=job_id).first(), message="the task")
    ctx = AgentContext(task=task, upstream={})

    found = ctx.memory_search("when does Nordwind deliver?", k=5)
    stored = ctx.memory_store("Deliveries are planned for next week.", metadata={"confidence": "high"})

    assert [hit["text"] for hit in found] == ["Supplier Nordwind delivers on Tuesdays and Fridays."]
    assert set(found[0]) == {"id", "text", "score", "metadata", "namespace"}
    memory = Memory.objects.get(pk=stored)
    assert memory.owner == alice.user
    assert memory.metadata == {
        "confidence": "high", "source": "agent", "job": job_id, "task": str(task.id), "task_key": "plan-deliveries",
    }  # fmt: skip
    assert ctx.memory_search("deliveries next week", k=1)[0]["id"] == stored
