"""One job is one trace: the REST request, each dispatch, each worker attempt and the
agent's HTTP or LLM call, exported over OTLP/HTTP by the web, orchestrator and worker
processes to a receiver this test starts."""

from __future__ import annotations

import json
import urllib.request

import pytest

from core.embedded import free_port
from tests.conftest import job_wait, make_user, wait_for, worker_registered
from tests.tracing.otlp_receiver import OtlpReceiver
from tests.workers.servers import ScriptedServer, chat_completion

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP's SpanKind numbers


@pytest.fixture
def receiver():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def traced_fleet(processes, redis_flushed, receiver, tmp_path):
    """Web, orchestrator and worker with tracing on, an HTTP agent and an LLM server."""
    http_agent = ScriptedServer(free_port(), lambda n, body: (200, {"output": {"seen": body["input"]}}))
    llm = ScriptedServer(free_port(), lambda n, body: (200, chat_completion("a traced answer", prompt_tokens=31)))
    agents = tmp_path / "agents.json"
    agents.write_text(
        json.dumps(
            [
                {"name": "traced_http", "kind": "http", "url": http_agent.url + "/", "secret": "s3cret", "timeout": 10},
                {"name": "traced_llm", "kind": "llm", "base_url": llm.url + "/v1", "model": "traced-model"},
            ]
        )
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second, not five
        "AGENTBUS_AGENTS_FILE": str(agents),
    }
    orchestrator = processes.start("orchestrate", name="traced-orchestrator", env=env)
    worker = processes.start("rqworker", "default", name="traced-worker", env=env)
    web, base = processes.start_web(free_port(), name="traced-web", env=env)
    from orchestration.leader import leader_identity

    wait_for(leader_identity, timeout=30, message="the orchestrator to lead")
    wait_for(lambda: worker_registered(redis_flushed), timeout=30, message="the worker to register")
    yield base, http_agent, llm
    for proc in (web, worker, orchestrator):
        processes.stop(proc)
    http_agent.close()
    llm.close()


def post_job(base: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + "/jobs",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.django_db(transaction=True)
def test_one_trace_covers_a_job_from_the_request_to_the_agents_calls(traced_fleet, receiver):
    from accounts.models import ApiToken

    base, http_agent, llm = traced_fleet
    _, token = ApiToken.issue(user=make_user("tracer"))
    plan = {
        "tasks": [
            {"key": "fetch", "agent": "traced_http", "input": {"url": "x"}},
            {"key": "write", "agent": "traced_llm", "depends_on": ["fetch"]},
        ]
    }
    job = post_job(base, token, {"requirements": "trace me", "plan": plan})
    assert job_wait(job["id"]).status == "succeeded"

    def whole_trace():
        with receiver.lock:
            spans = list(receiver.spans)
        roots = [s for s in spans if s.kind == SERVER and s.attributes.get("http.route") == "/jobs"]
        if not roots:
            return None
        trace = [s for s in spans if s.trace_id == roots[0].trace_id]
        complete = sum(s.name == "task.run" for s in trace) == 2 and any(s.name.startswith("chat") for s in trace)
        return trace if complete else None

    trace = wait_for(whole_trace, timeout=20, message="the job's spans to reach the receiver")
    by_id = {s.span_id: s for s in trace}
    (root,) = [s for s in trace if s.kind == SERVER and s.attributes.get("http.route") == "/jobs"]
    assert root.service == "agentbus-web" and root.parent_span_id == ""
    assert root.attributes["http.response.status_code"] == 201
    assert root.name == "POST /jobs"

    dispatches = [s for s in trace if s.kind == PRODUCER]
    assert len(dispatches) == 2
    # The submission dispatches the root; the worker that commits its result, the dependent.
    assert sorted(s.service for s in dispatches) == ["agentbus-web", "agentbus-worker"]
    assert all(s.parent_span_id == root.span_id for s in dispatches)  # the request, or the job's kept context
    runs = [s for s in trace if s.name == "task.run"]
    assert {s.service for s in runs} == {"agentbus-worker"} and all(s.kind == CONSUMER for s in runs)
    # Each attempt hangs off the dispatch span whose context its signed message carried.
    assert {by_id[s.parent_span_id].attributes["agentbus.task_id"] for s in runs} == {
        s.attributes["agentbus.task_id"] for s in runs
    }

    (http_call,) = [s for s in trace if s.kind == CLIENT and s.name == "POST"]
    assert by_id[http_call.parent_span_id].name == "task.run"
    assert http_call.attributes["http.response.status_code"] == 200
    # The agent was handed the trace too, in the call's own context.
    sent = http_agent.requests[0]["headers"]["traceparent"]
    assert sent.split("-")[1:3] == [root.trace_id, http_call.span_id]

    (chat,) = [s for s in trace if s.name == "chat traced-model"]
    assert by_id[chat.parent_span_id].name == "task.run"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "traced-model"
    assert chat.attributes["gen_ai.response.model"] == "scripted-model"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 31
    assert chat.attributes["gen_ai.usage.output_tokens"] == 10
    assert llm.calls == 1
