"""A real web process for the browser tests: daphne serving agentbus_site.asgi, as the
Procfile's `web` does, on the test database and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import ROOT, process_env, wait_for

WEB_PORT = int(os.environ.get("AGENTBUS_TEST_WEB_PORT", "8130"))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def web(processes, tmp_path_factory):
    """The base URL of a daphne server started for this test session."""
    log_path = tmp_path_factory.mktemp("web") / "daphne.log"
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(WEB_PORT), "agentbus_site.asgi:application"],
            cwd=ROOT,
            env=process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc.log_path = str(log_path)
    processes.running.append(proc)  # stopped with the others at the end of the session
    base = f"http://127.0.0.1:{WEB_PORT}"
    wait_for(lambda: proc.poll() is not None or _answers(base + "/healthz"), timeout=30, message="daphne to answer")
    if proc.poll() is not None:
        pytest.fail("daphne exited:\n" + log_path.read_text()[-3000:])
    return base
