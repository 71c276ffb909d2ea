"""agentbus as an A2A server, driven by the official a2a-sdk client (A2A 1.0, JSON-RPC)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from a2a.helpers import get_data_parts
from a2a.types import a2a_pb2 as pb
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from a2a.utils.errors import A2AError, TaskNotFoundError

from tests.conftest import client_for, make_user, plan, wait_for
from tests.protocols.a2a_peers import a2a_client, artifacts, collect, last_status, message, states
from tests.protocols.conftest import raw_token

pytestmark = pytest.mark.django_db(transaction=True)


def run(coro):
    return asyncio.run(coro)


def test_the_agent_card_is_public_at_the_well_known_path_and_declares_the_token(protocol_web):
    card = httpx.get(protocol_web.http + AGENT_CARD_WELL_KNOWN_PATH, timeout=10).json()
    assert AGENT_CARD_WELL_KNOWN_PATH == "/.well-known/agent-card.json"
    assert card["name"] == "agentbus" and card["capabilities"]["streaming"] is True
    assert card["supportedInterfaces"] == [
        {"url": f"{protocol_web.http}/a2a", "protocolBinding": "JSONRPC", "protocolVersion": version}
        for version in ("1.0", "0.3")  # the SDK's 0.3 compatibility, on the same endpoint
    ]
    assert card["securitySchemes"]["agentbusToken"]["httpAuthSecurityScheme"]["scheme"] == "bearer"
    assert card["securityRequirements"] == [{"schemes": {"agentbusToken": {}}}]


def test_a_forged_host_header_is_refused_before_the_card_echoes_it(protocol_web):
    forged = httpx.get(protocol_web.http + AGENT_CARD_WELL_KNOWN_PATH, headers={"Host": "evil.example"}, timeout=10)
    assert forged.status_code == 400 and forged.json()["error"] == "bad_request"
    assert "evil.example" not in forged.text
    mcp = httpx.post(f"{protocol_web.http}/mcp", json={}, headers={"Host": "evil.example"}, timeout=10)
    assert mcp.status_code == 400


def test_a_streamed_message_creates_a_job_and_streams_its_states_and_artifacts(pipeline, protocol_web, alice):
    async def scenario():
        _, client, http = await a2a_client(protocol_web.http, raw_token(alice))
        async with http:
            request = message(
                text="count to two",
                data=plan(
                    {"key": "a", "agent": "sleepy", "input": {"seconds": 0.5}},
                    {"key": "b", "agent": "echo", "depends_on": ["a"], "input": {"n": 2}},
                ),
            )
            events = await collect(client.send_message(request))
            task = await client.get_task(pb.GetTaskRequest(id=events[0].task.id))
            return events, task

    events, task = run(scenario())
    seen = states(events)
    assert seen[0] in ("TASK_STATE_SUBMITTED", "TASK_STATE_WORKING")
    assert "TASK_STATE_WORKING" in seen and seen[-1] == "TASK_STATE_COMPLETED"
    outputs = artifacts(events)
    assert list(outputs) == ["a", "b", "result"]  # each task's output as it happened, then the result
    assert outputs["b"]["input"] == {"n": 2}
    assert "b" in outputs["result"]["outputs"]
    # tasks/get maps to the job: its id, its state, its outputs.
    assert pb.TaskState.Name(task.status.state) == "TASK_STATE_COMPLETED"
    alice_job = alice.get(f"/jobs/{task.id}").data
    assert alice_job["status"] == "succeeded" and alice_job["requirements"] == "count to two"
    assert {a.name for a in task.artifacts} == {"a", "b", "result"}


def test_a_review_gate_is_input_required_and_the_next_message_answers_it(pipeline, protocol_web, alice):
    async def scenario():
        _, client, http = await a2a_client(protocol_web.http, raw_token(alice))
        async with http:
            gated = plan({"key": "draft", "agent": "draft", "input": {"topic": "tides"}, "review": "after"})
            first = await collect(client.send_message(message(data=gated)))
            task_id = first[0].task.id
            approved = await collect(client.send_message(message(text="approve", task_id=task_id)))

            question = plan({"key": "ask", "agent": "asker", "input": {"question": "Which colour?"}})
            asked = await collect(client.send_message(message(data=question)))
            answered = await collect(client.send_message(message(text="blue", task_id=asked[0].task.id)))
            return first, approved, asked, answered

    first, approved, asked, answered = run(scenario())
    assert states(first)[-1] == "TASK_STATE_INPUT_REQUIRED"
    gate = last_status(first).message
    (review,) = get_data_parts(gate.parts)
    assert review["review"]["kind"] == "after" and review["review"]["proposed"]["text"] == "tides"
    assert states(approved)[-1] == "TASK_STATE_COMPLETED"
    assert artifacts(approved)["draft"]["text"] == "tides"

    assert states(asked)[-1] == "TASK_STATE_INPUT_REQUIRED"
    assert "Which colour?" in last_status(asked).message.parts[0].text
    assert states(answered)[-1] == "TASK_STATE_COMPLETED"
    assert artifacts(answered)["ask"]["answer"] == "blue"


def test_a_client_cancels_another_job_and_a_blocking_send_waits_for_the_result(pipeline, protocol_web, alice):
    async def scenario():
        _, client, http = await a2a_client(protocol_web.http, raw_token(alice), streaming=False)
        async with http:
            slow = message(data=plan({"key": "x", "agent": "sleepy", "input": {"seconds": 20}}))
            slow.configuration.return_immediately = True
            (started,) = await collect(client.send_message(slow))
            cancelled = await client.cancel_task(pb.CancelTaskRequest(id=started.task.id))
            (blocking,) = await collect(client.send_message(message(data=plan({"key": "e", "agent": "echo"}))))
            return started, cancelled, blocking

    started, cancelled, blocking = run(scenario())
    assert pb.TaskState.Name(cancelled.status.state) == "TASK_STATE_CANCELED"
    assert alice.get(f"/jobs/{started.task.id}").data["status"] == "cancelled"
    assert pb.TaskState.Name(blocking.task.status.state) == "TASK_STATE_COMPLETED"


def test_another_users_job_is_invisible_over_a2a(pipeline, protocol_web, alice):
    bob = client_for(make_user("bob"))
    bobs = bob.post("/jobs", {"plan": plan({"key": "x", "agent": "sleepy", "input": {"seconds": 5}})}, format="json")
    bobs_id = bobs.data["id"]

    async def scenario():
        _, client, http = await a2a_client(protocol_web.http, raw_token(alice))
        refusals = []
        async with http:
            for call in (
                lambda: client.get_task(pb.GetTaskRequest(id=bobs_id)),
                lambda: client.cancel_task(pb.CancelTaskRequest(id=bobs_id)),
                lambda: collect(client.send_message(message(text="approve", task_id=bobs_id))),
                lambda: collect(client.subscribe(pb.SubscribeToTaskRequest(id=bobs_id))),
            ):
                with pytest.raises(A2AError) as refused:
                    await call()
                refusals.append(refused.value)
            listed = await client.list_tasks(pb.ListTasksRequest())
        return refusals, listed

    refusals, listed = run(scenario())
    assert all(isinstance(r, TaskNotFoundError) for r in refusals), refusals
    assert bobs_id not in {t.id for t in listed.tasks}
    assert bob.get(f"/jobs/{bobs_id}").data["status"] != "cancelled"  # nothing happened to it
    wait_for(lambda: bob.get(f"/jobs/{bobs_id}").data["status"] == "succeeded", timeout=30)


def test_a_0_3_client_is_answered_on_the_same_endpoint(pipeline, protocol_web, alice):
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "message/send",
        "params": {
            "message": {
                "messageId": "old-client-1",
                "role": "user",
                "kind": "message",
                "parts": [{"kind": "data", "data": plan({"key": "e", "agent": "echo", "input": {"n": 1}})}],
            }
        },
    }
    headers = {"Authorization": f"Bearer {raw_token(alice)}"}
    reply = httpx.post(f"{protocol_web.http}/a2a", json=body, headers=headers, timeout=30).json()
    assert reply["result"]["kind"] == "task" and reply["result"]["status"]["state"] == "completed"
    got = httpx.post(
        f"{protocol_web.http}/a2a",
        json={"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": reply["result"]["id"]}},
        headers=headers,
        timeout=10,
    ).json()
    assert got["result"]["status"]["state"] == "completed"


def test_a2a_without_a_valid_token_is_a_401(protocol_web):
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = httpx.post(f"{protocol_web.http}/a2a", json=body, headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"
