"""Agents of kind `mcp` and `a2a`: staff register an MCP server or an A2A agent, and
tasks call the real peers (servers built with the official SDKs, started here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients.conftest import free_port
from tests.conftest import ROOT, client_for, job_wait, make_user, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PEER_TOKEN = "peer-secret-token"


def _port_answers(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _peer(module: str, *args: str, tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("peer") / f"{module}.log", "w")  # noqa: SIM115 (the peer writes to it)
    proc = subprocess.Popen(
        [sys.executable, "-m", f"tests.protocols.peers.{module}", str(port), *args],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for(lambda: proc.poll() is not None or _port_answers(port), timeout=30, message=f"{module} to listen")
    assert proc.poll() is None, Path(log.name).read_text()
    return proc, port


@pytest.fixture(scope="module")
def mcp_peer(tmp_path_factory):
    proc, port = _peer("mcp_peer", PEER_TOKEN, tmp_path_factory=tmp_path_factory)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def a2a_peer(tmp_path_factory):
    proc, port = _peer("a2a_peer", tmp_path_factory=tmp_path_factory)
    yield f"http://127.0.0.1:{port}/.well-known/agent-card.json"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def staff(db):
    return client_for(make_user("ops", staff=True))


def register(staff, **agent) -> dict:
    response = staff.post("/agents", agent, format="json")
    assert response.status_code == 201, response.data
    return response.data


def run_job(client, *tasks: dict):
    response = client.post("/jobs", {"plan": plan(*tasks)}, format="json")
    assert response.status_code == 201, response.data
    return job_wait(response.data["id"], timeout=40)


def test_an_mcp_task_calls_one_allowed_tool_of_the_registered_server(pipeline, mcp_peer, staff, alice):
    listed = register(
        staff,
        name="peer-mcp",
        kind="mcp",
        url=mcp_peer,
        auth_header=f"Authorization: Bearer {PEER_TOKEN}",
        allowed_tools=["add", "shout", "fail"],
        timeout=20,
    )
    assert listed["kind"] == "mcp" and listed["allowed_tools"] == ["add", "shout", "fail"]
    assert "auth_header" not in listed  # never shown

    job = run_job(
        alice,
        {"key": "sum", "agent": "peer-mcp", "input": {"tool": "add", "arguments": {"a": 2, "b": 3}}},
        {"key": "loud", "agent": "peer-mcp", "input": {"tool": "shout", "arguments": {"text": "hi"}}},
    )
    assert job.status == "succeeded", job.error
    outputs = {t.key: t.output for t in job.tasks.all()}
    assert outputs["sum"] == {"result": 5}
    assert outputs["loud"]["text"] == "HI"

    # GET /agents lists it with its health, like any agent.
    agents = {a["name"]: a for a in alice.get("/agents").data["agents"]}
    assert agents["peer-mcp"]["health"]["status"] == "ok"
    assert agents["peer-mcp"]["circuit"]["state"] == "closed"


def test_a_tool_error_fails_the_task_with_its_message_and_unlisted_tools_are_refused(pipeline, mcp_peer, staff, alice):
    register(
        staff,
        name="peer-mcp-2",
        kind="mcp",
        url=mcp_peer,
        auth_header=f"Authorization: Bearer {PEER_TOKEN}",
        allowed_tools=["fail", "add"],
        max_attempts=3,
    )
    failed = run_job(
        alice, {"key": "f", "agent": "peer-mcp-2", "input": {"tool": "fail", "arguments": {"reason": "no"}}}
    )
    task = failed.tasks.get()
    assert failed.status == "failed" and task.status == "failed"
    assert "it failed: no" in task.error
    assert task.attempt == 1  # the same call would fail again: not retried

    refused = run_job(alice, {"key": "s", "agent": "peer-mcp-2", "input": {"tool": "secret"}})
    assert "not allowed" in refused.tasks.get().error

    # The token is the registration's: without it the server refuses, and the task fails.
    register(staff, name="peer-mcp-anon", kind="mcp", url=mcp_peer, allowed_tools=["add"])
    anonymous = run_job(alice, {"key": "a", "agent": "peer-mcp-anon", "input": {"arguments": {"a": 1, "b": 1}}})
    assert anonymous.status == "failed" and "401" in anonymous.tasks.get().error


def test_python_agents_call_mcp_tools_through_ctx_mcp(pipeline, mcp_peer, staff, alice):
    register(
        staff,
        name="peer-tools",
        kind="mcp",
        url=mcp_peer,
        auth_header=f"Authorization: Bearer {PEER_TOKEN}",
        allowed_tools=["add"],
    )
    job = run_job(
        alice,
        {
            "key": "py",
            "agent": "mcp_caller",
            "input": {"server": "peer-tools", "tool": "add", "arguments": {"a": 40, "b": 2}},
        },
    )
    assert job.status == "succeeded", job.error
    assert job.tasks.get().output == {"tool": {"result": 42}}


def test_bad_registrations_name_the_field(staff):
    no_tools = staff.post("/agents", {"name": "x", "kind": "mcp", "url": "http://127.0.0.1:1/mcp"}, format="json")
    assert no_tools.status_code == 400 and "allowed_tools" in no_tools.data["fields"]
    no_url = staff.post("/agents", {"name": "y", "kind": "a2a"}, format="json")
    assert no_url.status_code == 400 and "url" in no_url.data["fields"]
    bad_header = staff.post(
        "/agents",
        {"name": "z", "kind": "a2a", "url": "http://127.0.0.1:1/card", "auth_header": "no colon"},
        format="json",
    )
    assert bad_header.status_code == 400 and "auth_header" in bad_header.data["fields"]


def test_an_a2a_task_delegates_to_the_remote_agent_and_takes_its_artifacts(pipeline, a2a_peer, staff, alice):
    listed = register(staff, name="peer-a2a", kind="a2a", url=a2a_peer, timeout=20)
    assert listed["kind"] == "a2a" and listed["url"] == a2a_peer

    job = run_job(alice, {"key": "d", "agent": "peer-a2a", "input": {"text": "hello", "n": 3}})
    assert job.status == "succeeded", job.error
    output = job.tasks.get().output
    assert output["state"] == "completed"
    assert output["artifacts"]["echo"]["got"] == {"text": "hello", "n": 3}
    assert output["artifacts"]["echo"]["context"] == str(job.id)  # the job is the remote context

    failed = run_job(alice, {"key": "f", "agent": "peer-a2a", "input": {"fail": True}})
    assert failed.status == "failed" and "the peer gave up" in failed.tasks.get().error


def test_a_remote_input_required_becomes_an_agentbus_question_and_the_answer_goes_back(
    pipeline, a2a_peer, staff, alice
):
    register(staff, name="peer-a2a-ask", kind="a2a", url=a2a_peer, timeout=20)
    job_id = alice.post(
        "/jobs", {"plan": plan({"key": "q", "agent": "peer-a2a-ask", "input": {"ask": True}})}, format="json"
    ).data["id"]

    def question():
        pending = alice.get(f"/reviews?status=pending&job={job_id}").data["results"]
        return pending[0] if pending else None

    review = wait_for(question, timeout=30, message="the remote agent's question")
    assert review["kind"] == "question" and review["proposed"]["question"].startswith("Which size?")
    assert alice.get(f"/jobs/{job_id}").data["tasks"][0]["status"] == "awaiting_input"

    decided = alice.post(f"/reviews/{review['id']}/decision", {"decision": "respond", "answer": "large"}, format="json")
    assert decided.status_code == 200, decided.data
    job = job_wait(job_id, timeout=30)
    assert job.status == "succeeded", job.error
    assert job.tasks.get().output["artifacts"]["answer"]["size"] == "large"


def test_an_unreachable_mcp_server_is_retried_with_backoff_then_fails(pipeline, staff, alice):
    nowhere = f"http://127.0.0.1:{free_port()}/mcp"
    register(staff, name="gone-mcp", kind="mcp", url=nowhere, allowed_tools=["add"], max_attempts=2, timeout=5)
    job = run_job(alice, {"key": "x", "agent": "gone-mcp", "input": {"arguments": {"a": 1, "b": 2}}})
    task = job.tasks.get()
    assert job.status == "failed"
    assert task.attempt == 2  # a connection failure may heal: retried, unlike a tool's error
    assert "cannot reach MCP server 'gone-mcp'" in task.error


def test_a_card_cannot_send_the_worker_off_its_own_origin(pipeline, a2a_peer, staff, alice):
    # The same peer under another name: its card's endpoint (127.0.0.1) is then on
    # another origin than the registered card URL (localhost), and is not called.
    elsewhere = a2a_peer.replace("127.0.0.1", "localhost")
    register(staff, name="peer-a2a-elsewhere", kind="a2a", url=elsewhere, timeout=10)
    job = run_job(alice, {"key": "d", "agent": "peer-a2a-elsewhere", "input": {"n": 1}})
    assert job.status == "failed"
    assert "off the card's origin" in job.tasks.get().error
