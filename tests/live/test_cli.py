"""`manage.py submit_job`: a program's way in, through the public REST API and websocket
of a running server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, plan, process_env
from tests.live.conftest import token_of

pytestmark = pytest.mark.django_db(transaction=True)


def submit_job(web, *args: str, token: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "submit_job", "--url", web.http, "--token", token, *args],
        check=False,
        cwd=ROOT,
        env=process_env(),
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
    done = submit_job(web, "--plan", str(plan_file), "--follow", token=token_of(alice).split()[1])

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
    done = submit_job(web, "--plan", str(plan_file), "--follow", "--quiet", token=token_of(alice).split()[1])
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "failed"
    assert "never work" in done.stderr


def test_bad_input_is_reported_with_where_it_is_wrong(web, alice, tmp_path):
    token = token_of(alice).split()[1]
    unknown_agent = tmp_path / "unknown.json"
    unknown_agent.write_text(json.dumps(plan({"key": "x", "agent": "no-such-agent"})))
    done = submit_job(web, "--plan", str(unknown_agent), token=token)
    assert done.returncode == 2
    assert "plan.tasks[0].agent" in done.stderr

    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    assert submit_job(web, "--plan", str(not_json), token=token).returncode == 2
    assert submit_job(web, "--plan", str(tmp_path / "missing.json"), token=token).returncode == 2

    plan_file = tmp_path / "ok.json"
    plan_file.write_text(json.dumps(plan({"key": "x", "agent": "echo"})))
    refused = submit_job(web, "--plan", str(plan_file), token="not-a-token")
    assert refused.returncode == 2, (refused.stderr, web.log_path.read_text()[-4000:])
    assert "401" in refused.stderr
