"""The examples a user copies work as documented."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from agents.registry import agents_from_file
from tests.conftest import ROOT, job_wait, plan, wait_for

EXAMPLE_PORT = 8142


@pytest.fixture
def example_http_agent():
    proc = subprocess.Popen(
        [sys.executable, "examples/http_agent.py", "--port", str(EXAMPLE_PORT)],
        cwd=ROOT,
        env={"AGENT_SECRET": "example-secret", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{EXAMPLE_PORT}/", data=b"{}", timeout=1)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    wait_for(up, timeout=10, message="the example agent to listen")
    yield f"http://127.0.0.1:{EXAMPLE_PORT}/"
    proc.terminate()
    proc.wait(5)


@pytest.mark.django_db(transaction=True)
def test_the_example_http_agent_refuses_unsigned_requests_and_runs_in_a_job(pipeline, staff, alice, example_http_agent):
    request = urllib.request.Request(example_http_agent, data=json.dumps({"input": {}}).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401

    body = {"name": "shout", "kind": "http", "url": example_http_agent, "secret": "example-secret", "timeout": 5}
    assert staff.post("/agents", body, format="json").status_code == 201
    job = alice.post(
        "/jobs",
        {
            "plan": plan(
                {"key": "a", "agent": "echo"},
                {"key": "s", "agent": "shout", "input": {"text": "hi"}, "depends_on": ["a"]},
            )
        },
        format="json",
    ).json()
    assert job_wait(job["id"]).status == "succeeded"
    output = alice.get(f"/jobs/{job['id']}/results").json()["tasks"]["s"]["output"]
    assert output["shout"].startswith("HI {")


def test_agents_declared_in_a_settings_file_are_loaded_with_secrets_from_the_environment(settings, monkeypatch):
    settings.AGENTBUS_LLM_BASE_URL = "http://127.0.0.1:8141/v1"
    monkeypatch.setenv("SHOUT_AGENT_SECRET", "from-env")
    specs = {s.name: s for s in agents_from_file(str(ROOT / "examples" / "agents.json"))}
    assert specs["shout"].kind == "http" and specs["shout"].secret == "from-env" and specs["shout"].concurrency == 4
    assert specs["summarizer"].kind == "llm" and specs["summarizer"].max_tokens == 300
    assert all(s.source == "settings" for s in specs.values())
