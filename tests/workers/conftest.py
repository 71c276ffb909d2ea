"""Fixtures of the agent tests: staff client, scripted servers on this suite's ports
(8140-8149), and a worker for the planner and LLM queues that knows the scripted
LLM's URL."""

from __future__ import annotations

import pytest

from tests.conftest import client_for, make_user, wait_for, worker_registered
from tests.workers.servers import ScriptedServer

AGENT_PORT = 8140
LLM_PORT = 8141
LLM_URL = f"http://127.0.0.1:{LLM_PORT}/v1"


@pytest.fixture
def staff(db):
    return client_for(make_user("operator", staff=True))


@pytest.fixture
def serve():
    """``serve(port, script)`` starts a scripted server that stops after the test."""
    started: list[ScriptedServer] = []

    def start(port: int, script) -> ScriptedServer:
        server = ScriptedServer(port, script)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def llm_worker(pipeline, processes, redis_flushed):
    env = {"AGENTBUS_LLM_BASE_URL": LLM_URL, "AGENTBUS_LLM_MODEL": "scripted-model"}
    worker = processes.start("rqworker", "planner", "llm", name="llm-worker", env=env)
    wait_for(lambda: worker_registered(redis_flushed, "llm"), timeout=30, message="the LLM worker to register")
    yield worker
    processes.stop(worker)


@pytest.fixture
def llm_configured(settings):
    """This (web) process plans jobs without a plan, as the workers do."""
    settings.AGENTBUS_LLM_BASE_URL = LLM_URL
    settings.AGENTBUS_LLM_MODEL = "scripted-model"
