"""The client package (clients/python, `agentbus_client`) against a running server:
submit, follow across a killed web process, errors as exceptions carrying the API's
JSON error, a review decided from the CLI, and an install on a machine with only the
client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from agentbus_client import AsyncClient, Client, NotFoundError
from agentbus_client.errors import ApiError, AuthenticationError, ConflictError

from tests.conftest import ROOT, client_for, make_user, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

AGENTBUS = str(Path(sys.executable).parent / "agentbus")


def test_the_client_submits_a_plan_follows_it_and_reads_its_results(pipeline, own_web, token):
    with Client(own_web.http, token) as bus:
        job = bus.submit(
            plan=plan(
                {"key": "a", "agent": "echo", "input": {"n": 1}},
                {"key": "b", "agent": "echo", "depends_on": ["a"]},
            ),
            requirements="client test",
        )
        events = list(bus.follow(job["id"], timeout=30))
        results = bus.results(job["id"])

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "job.status" and events[-1]["status"] == "succeeded"
    assert {e.get("key") for e in events if e["type"] == "task.status"} == {"a", "b"}
    assert results["status"] == "succeeded"
    assert results["tasks"]["a"]["output"]["input"] == {"n": 1}


def test_errors_are_exceptions_carrying_the_apis_json_error(pipeline, own_web, token):
    bob = client_for(make_user("bob"))
    bobs_job = bob.post(
        "/jobs", {"plan": plan({"key": "x", "agent": "sleepy", "input": {"seconds": 2}})}, format="json"
    )
    with Client(own_web.http, token) as bus:
        with pytest.raises(ApiError) as bad:
            bus.submit(plan=plan({"key": "x", "agent": "no-such-agent"}))
        assert bad.value.status == 400
        assert bad.value.error == "invalid_plan"
        assert "plan.tasks[0].agent" in bad.value.fields

        # Someone else's job is a 404, exactly as over REST.
        with pytest.raises(NotFoundError) as missing:
            bus.job(bobs_job.data["id"])
        assert missing.value.error == "not_found"
        with pytest.raises(NotFoundError):
            list(bus.follow(bobs_job.data["id"]))

        running = bus.submit(plan=plan({"key": "x", "agent": "sleepy", "input": {"seconds": 2}}))
        with pytest.raises(ConflictError) as unfinished:
            bus.results(running["id"])
        assert unfinished.value.error == "job_not_finished"
        bus.cancel(running["id"])

    with Client(own_web.http, "not-a-token") as stranger, pytest.raises(AuthenticationError):
        stranger.jobs()


def test_the_async_client_does_the_same(pipeline, own_web, token):
    async def scenario():
        async with AsyncClient(own_web.http, token) as bus:
            job = await bus.submit(plan=plan({"key": "a", "agent": "echo", "input": {"n": 7}}))
            seen = [event async for event in bus.follow(job["id"], timeout=30)]
            return seen, await bus.results(job["id"])

    events, results = asyncio.run(scenario())
    assert events[-1]["status"] == "succeeded"
    assert results["tasks"]["a"]["output"]["input"] == {"n": 7}


def test_following_resumes_from_the_last_event_after_the_web_process_is_killed(pipeline, own_web, token):
    events: list[dict] = []
    reconnects: list[str] = []
    failure: list[BaseException] = []
    with Client(own_web.http, token) as bus:
        job = bus.submit(
            plan=plan(
                {"key": "a", "agent": "sleepy", "input": {"seconds": 1.5}},
                {"key": "b", "agent": "sleepy", "depends_on": ["a"], "input": {"seconds": 1.5}},
                {"key": "c", "agent": "echo", "depends_on": ["b"]},
            )
        )

        def follow():
            try:
                for event in bus.follow(
                    job["id"], timeout=60, on_reconnect=lambda n, exc: reconnects.append(repr(exc))
                ):
                    events.append(event)  # noqa: PERF402 (read by the main thread while it grows)
            except BaseException as exc:
                failure.append(exc)

        follower = threading.Thread(target=follow)
        follower.start()
        wait_for(lambda: any(e.get("key") == "a" and e.get("status") == "running" for e in events), timeout=20)
        own_web.kill()  # the socket drops mid-job, with events still to come
        time.sleep(0.5)
        own_web.start()
        follower.join(60)
        log = bus.events(job["id"])["events"]

    assert not failure, failure
    seqs = [e["seq"] for e in events]
    # Every event of the log exactly once, in order, across the reconnect.
    assert seqs == [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert reconnects, "the socket never dropped"
    assert events[-1]["type"] == "job.status" and events[-1]["status"] == "succeeded"


def test_a_review_is_listed_shown_and_decided_from_the_cli(pipeline, own_web, token):
    env = {**os.environ, "AGENTBUS_URL": own_web.http, "AGENTBUS_TOKEN": token}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([AGENTBUS, *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    with Client(own_web.http, token) as bus:
        job = bus.submit(plan=plan({"key": "draft", "agent": "draft", "input": {"topic": "tides"}, "review": "after"}))
        review_id = wait_for(
            lambda: next(iter(r["id"] for r in bus.reviews(status="pending", job=job["id"])["results"]), None),
            timeout=20,
            message="the output review",
        )
        listed = cli("reviews", "list")
        assert listed.returncode == 0, listed.stderr
        assert review_id in listed.stdout

        shown = cli("reviews", "show", review_id)
        assert shown.returncode == 0 and json.loads(shown.stdout)["proposed"]["text"] == "tides"

        decided = cli("reviews", "decide", review_id, "edit", "--output", '{"text": "tides, edited"}')
        assert decided.returncode == 0, decided.stderr
        assert json.loads(decided.stdout)["decision"] == "edit"
        assert cli("reviews", "decide", review_id, "approve").returncode == 2  # a second decision is a 409

        results = bus.wait(job["id"], timeout=30)
    assert results["status"] == "succeeded"
    assert results["tasks"]["draft"]["output"] == {"text": "tides, edited"}


def test_the_package_installs_and_runs_on_a_machine_with_only_the_client(pipeline, own_web, token, tmp_path):
    # A copy of the package alone, outside the repository, into a fresh venv without
    # the server's site-packages: pip fetches its dependencies as a user's pip would.
    source = tmp_path / "agentbus-client"
    shutil.copytree(ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(source)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import agentbus_client, importlib.util; print(importlib.util.find_spec('django'))"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None"  # the client imports, and there is no Django to lean on

    command = str(venv / "bin" / "agentbus")
    assert "submit" in subprocess.run([command, "--help"], env=env, capture_output=True, text=True, check=True).stdout
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan({"key": "hello", "agent": "echo", "input": {"text": "hi"}})))
    env.update(AGENTBUS_URL=own_web.http, AGENTBUS_TOKEN=token)
    done = subprocess.run(
        [command, "submit", "--plan", str(plan_file), "--follow"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["tasks"]["hello"]["output"]["input"] == {"text": "hi"}
    # The README's other lines, as written.
    answers = {}
    for args in (["status", results["job"]], ["results", results["job"]], ["reviews", "list"]):
        ran = subprocess.run([command, *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert ran.returncode == 0, (args, ran.stderr)
        answers[args[0]] = ran.stdout
    assert json.loads(answers["status"])["status"] == "succeeded"


def test_memory_is_stored_and_searched_from_the_cli(chroma_server, own_web, token):
    env = {**os.environ, "AGENTBUS_URL": own_web.http, "AGENTBUS_TOKEN": token}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([AGENTBUS, *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    stored = cli("memory", "store", "Invoice INV-2024-00917 was paid", "--metadata", '{"topic": "billing"}')
    assert stored.returncode == 0, stored.stderr
    memory_id = json.loads(stored.stdout)["id"]
    cli("memory", "store", "The office plants need water on Fridays")
    found = cli("memory", "search", "which invoice was paid", "-k", "5", "--where", "topic=billing")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["results"]
    assert [hit["id"] for hit in hits] == [memory_id]
    assert cli("memory", "store", "   ").returncode == 2  # blank text: a 400 naming the field
