"""The `agentbus` command (clients/python): a program's way in, through the public REST
API and websocket of a running server. (It replaced `manage.py submit_job`, which needed
the server's settings and secrets on the client's machine.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, plan
from tests.live.conftest import token_of

pytestmark = pytest.mark.django_db(transaction=True)

AGENTBUS = str(Path(sys.executable).parent / "agentbus")


def agentbus(web, *args: str, token: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        # --token=...: a token may start with "-", which argparse would take for an option.
        [AGENTBUS, "--url", web.http, f"--token={token}", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_it_submits_a_plan_follows_the_job_live_and_prints_the_results(pipeline, web, alice, tmp_path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(
        json.dumps(
            plan(
                {"key": "first", "agent": "sleepy", "input": {"seconds": 0.3}},
                {"key": "second", "agent": "echo", "depends_on": ["first"], "input": {"n": 2}},
                {"key": "third", "agent": "echo", "depends_on": ["second"]},
            )
        )
    )
    done = agentbus(web, "submit", "--plan", str(plan_file), "--follow", token=token_of(alice).split()[1])

    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["status"] == "succeeded"
    assert results["tasks"]["second"]["output"]["input"] == {"n": 2}
    assert "third" in results["result"]["outputs"]
    # The progress bar went to stderr and reached all three tasks.
    assert "3/3" in done.stderr and "succeeded" in done.stderr


def test_a_failing_job_exits_non_zero_with_its_results(pipeline, web, alice, tmp_path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"plan": plan({"key": "x", "agent": "broken"}), "requirements": "will fail"}))
    done = agentbus(web, "submit", "--plan", str(plan_file), "--follow", "--quiet", token=token_of(alice).split()[1])
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "failed"
    assert "never work" in done.stderr


def test_bad_input_is_reported_with_where_it_is_wrong(web, alice, tmp_path):
    token = token_of(alice).split()[1]
    unknown_agent = tmp_path / "unknown.json"
    unknown_agent.write_text(json.dumps(plan({"key": "x", "agent": "no-such-agent"})))
    done = agentbus(web, "submit", "--plan", str(unknown_agent), token=token)
    assert done.returncode == 2
    assert "plan.tasks[0].agent" in done.stderr

    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    assert agentbus(web, "submit", "--plan", str(not_json), token=token).returncode == 2
    assert agentbus(web, "submit", "--plan", str(tmp_path / "missing.json"), token=token).returncode == 2

    plan_file = tmp_path / "ok.json"
    plan_file.write_text(json.dumps(plan({"key": "x", "agent": "echo"})))
    refused = agentbus(web, "submit", "--plan", str(plan_file), token="not-a-token")
    assert refused.returncode == 2, (refused.stderr, web.log_path.read_text()[-4000:])
    assert "401" in refused.stderr
