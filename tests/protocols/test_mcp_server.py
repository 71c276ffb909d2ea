"""agentbus as an MCP server, driven by the official `mcp` client over streamable HTTP."""

from __future__ import annotations

import asyncio
import json

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import client_for, make_user, plan, wait_for
from tests.protocols.conftest import raw_token

pytestmark = pytest.mark.django_db(transaction=True)


def mcp_session(web, token: str):
    """An MCP client session as a user's assistant would open one: the URL and a bearer token."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return http, Client(streamable_http_client(f"{web.http}/mcp", http_client=http))


def tool_error(result) -> dict:
    """The API's JSON error in a tool error's text."""
    text = result.content[0].text
    return json.loads(text[text.index("{") :])


def run(coro):
    return asyncio.run(coro)


def test_an_mcp_client_submits_a_job_follows_its_progress_and_reads_its_results(pipeline, protocol_web, alice):
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def scenario():
        http, client = mcp_session(protocol_web, raw_token(alice))
        async with http, client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            submitted = await client.call_tool(
                "submit_job",
                {
                    "requirements": "over MCP",
                    "plan": plan(
                        {"key": "a", "agent": "sleepy", "input": {"seconds": 0.6}},
                        {"key": "b", "agent": "echo", "depends_on": ["a"], "input": {"n": 2}},
                    ),
                },
            )
            job_id = submitted.structured_content["id"]
            finished = await client.call_tool(
                "wait_for_job", {"job_id": job_id, "timeout": 30}, progress_callback=on_progress
            )
            resource = await client.read_resource(f"agentbus://jobs/{job_id}/results")
            return tools, submitted, finished, resource

    tools, submitted, finished, resource = run(scenario())
    assert {"submit_job", "get_job", "get_job_results", "cancel_job", "list_reviews", "decide_review"} <= tools
    assert {"search_memory", "store_memory", "wait_for_job", "get_review"} <= tools
    assert not submitted.is_error
    results = finished.structured_content
    assert results["finished"] is True and results["status"] == "succeeded"
    assert results["tasks"]["b"]["output"]["input"] == {"n": 2}
    # Progress notifications arrived while the job ran, increasing, up to both tasks done.
    values = [value for value, _, _ in progress]
    assert len(values) >= 2 and values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] == 2 and progress[-1][1] == 2
    assert json.loads(resource.contents[0].text)["status"] == "succeeded"


def test_mcp_tools_list_and_decide_reviews_cancel_and_refuse_bad_input(pipeline, protocol_web, alice):
    async def scenario():
        http, client = mcp_session(protocol_web, raw_token(alice))
        async with http, client:
            gated = await client.call_tool(
                "submit_job",
                {"plan": plan({"key": "draft", "agent": "draft", "input": {"topic": "tides"}, "review": "after"})},
            )
            job_id = gated.structured_content["id"]
            for _ in range(200):
                listed = await client.call_tool("list_reviews", {"job_id": job_id})
                if listed.structured_content["reviews"]:
                    break
                await asyncio.sleep(0.1)
            review = listed.structured_content["reviews"][0]
            decided = await client.call_tool("decide_review", {"review_id": review["id"], "decision": "approve"})
            again = await client.call_tool("decide_review", {"review_id": review["id"], "decision": "approve"})
            done = await client.call_tool("wait_for_job", {"job_id": job_id, "timeout": 30})

            long = await client.call_tool(
                "submit_job", {"plan": plan({"key": "x", "agent": "sleepy", "input": {"seconds": 20}})}
            )
            cancelled = await client.call_tool("cancel_job", {"job_id": long.structured_content["id"]})
            bad = await client.call_tool("submit_job", {"plan": plan({"key": "x", "agent": "no-such-agent"})})
            return decided, again, done, cancelled, bad

    decided, again, done, cancelled, bad = run(scenario())
    assert decided.structured_content["decision"] == "approve"
    assert again.is_error and tool_error(again)["status"] == 409
    assert done.structured_content["status"] == "succeeded"
    assert cancelled.structured_content["status"] == "cancelled"
    assert bad.is_error
    error = tool_error(bad)
    assert error["error"] == "invalid_plan" and "plan.tasks[0].agent" in error["fields"]


def test_another_users_job_is_invisible_over_mcp(pipeline, protocol_web, alice):
    bob = client_for(make_user("bob"))
    bobs = bob.post("/jobs", {"plan": plan({"key": "x", "agent": "echo"})}, format="json").data["id"]
    wait_for(lambda: bob.get(f"/jobs/{bobs}").data["status"] == "succeeded", message="bob's job")

    async def scenario():
        http, client = mcp_session(protocol_web, raw_token(alice))
        async with http, client:
            calls = {
                name: await client.call_tool(name, {"job_id": bobs})
                for name in ("get_job", "get_job_results", "cancel_job", "wait_for_job")
            }
            with pytest.raises(Exception) as resource:
                await client.read_resource(f"agentbus://jobs/{bobs}/results")
            return calls, resource.value

    calls, resource_error = run(scenario())
    for name, result in calls.items():
        assert result.is_error, name
        assert tool_error(result)["error"] == "not_found", name
    assert "not_found" in str(resource_error)
    # Bob still sees it: the refusal is about who asks.
    assert bob.get(f"/jobs/{bobs}").status_code == 200


def test_mcp_without_a_valid_token_is_a_401_in_the_apis_error_shape(protocol_web):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    for authorization in (None, "Bearer not-a-token"):
        sent = dict(headers, **({"Authorization": authorization} if authorization else {}))
        response = httpx.post(f"{protocol_web.http}/mcp", json=body, headers=sent, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"


def test_mcp_tools_store_and_search_the_callers_memory(chroma_server, protocol_web, alice):
    bob = client_for(make_user("bob"))
    bob.post("/memory/store", {"text": "Bob's invoice INV-7 was paid"}, format="json")

    async def scenario():
        http, client = mcp_session(protocol_web, raw_token(alice))
        async with http, client:
            stored = await client.call_tool(
                "store_memory", {"text": "Invoice INV-2024-00917 was paid", "metadata": {"topic": "billing"}}
            )
            found = await client.call_tool("search_memory", {"query": "which invoice was paid", "k": 5})
            blank = await client.call_tool("store_memory", {"text": "  "})
            return stored, found, blank

    stored, found, blank = run(scenario())
    texts = [hit["text"] for hit in found.structured_content["results"]]
    assert texts == ["Invoice INV-2024-00917 was paid"]  # bob's memory is not alice's
    assert found.structured_content["results"][0]["id"] == stored.structured_content["id"]
    assert blank.is_error and "text" in tool_error(blank)["fields"]
