"""HTTP agent signature v2 against the real example agent (examples/http_agent.py, a
process on 127.0.0.1): method, URL, agent name, timestamp and nonce are signed, a replay
is refused, and a reply is trusted only with a valid reply signature when the agent has
a reply secret."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from agents.http import HttpAgentError, http_agent_run, http_signature_v2
from agents.registry import AgentSpec
from tests.conftest import ROOT, wait_for

AGENT_PORT = 8247
URL = f"http://127.0.0.1:{AGENT_PORT}/"
SECRET, REPLY_SECRET = "v2-secret", "v2-reply-secret"


@pytest.fixture(scope="module")
def example_agent():
    env = {"AGENT_SECRET": SECRET, "AGENT_REPLY_SECRET": REPLY_SECRET, "AGENT_NAME": "shout", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "examples/http_agent.py", "--port", str(AGENT_PORT)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def up() -> bool:
        try:
            urllib.request.urlopen(URL, timeout=0.5)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    wait_for(up, timeout=10, message="the example agent")
    yield URL
    proc.terminate()
    proc.wait(5)


def signed_post(url: str, body: bytes, *, agent: str = "shout", nonce: str = "n-1", sign_url: str | None = None):
    timestamp = str(int(time.time()))
    signature = http_signature_v2(
        SECRET, method="POST", url=sign_url or url, agent=agent, timestamp=timestamp, nonce=nonce, body=body
    )
    headers = {
        "Content-Type": "application/json", "X-Agentbus-Agent": agent, "X-Agentbus-Timestamp": timestamp,
        "X-Agentbus-Nonce": nonce, "X-Agentbus-Signature-V2": signature,
    }  # fmt: skip
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


BODY = json.dumps({"input": {"text": "hi"}, "upstream": {}}).encode()


def test_a_captured_request_cannot_be_replayed(example_agent):
    nonce = f"replay-{time.time_ns()}"
    assert signed_post(example_agent, BODY, nonce=nonce) == 200
    assert signed_post(example_agent, BODY, nonce=nonce) == 401  # the same bytes again


def test_the_signature_binds_the_agent_and_the_url(example_agent):
    # Valid signatures, each for something else: another agent, another URL.
    assert signed_post(example_agent, BODY, agent="other", nonce=f"a-{time.time_ns()}") == 401
    assert signed_post(example_agent, BODY, nonce=f"u-{time.time_ns()}", sign_url=example_agent + "elsewhere") == 401


def ctx() -> SimpleNamespace:
    return SimpleNamespace(
        task_id="t", task_key="k", attempt=1, job_id="j", requirements="", input={"text": "hello"}, upstream={},
        human={}, spawn=None, ask_human=None,
    )  # fmt: skip


@pytest.mark.django_db
def test_the_worker_signs_v2_and_verifies_a_signed_reply(example_agent, redis_flushed):
    spec = AgentSpec(name="shout", kind="http", url=example_agent, secret=SECRET, reply_secret=REPLY_SECRET, timeout=5)
    assert http_agent_run(spec, ctx()) == {"shout": "HELLO"}


@pytest.mark.django_db
def test_a_reply_without_the_right_reply_signature_is_not_trusted(example_agent, redis_flushed):
    spec = AgentSpec(
        name="shout", kind="http", url=example_agent, secret=SECRET, reply_secret="not-the-agents", timeout=5,
        breaker_fail_max=1000,
    )  # fmt: skip
    with pytest.raises(HttpAgentError, match="Reply-Signature"):
        http_agent_run(spec, ctx())
