"""A real web process for the browser tests: daphne serving agentbus_site.asgi on the
test database and Redis."""

from __future__ import annotations

import os

import pytest

WEB_PORT = int(os.environ.get("AGENTBUS_TEST_WEB_PORT", "8130"))


@pytest.fixture(scope="session")
def web(processes):
    """The base URL of a daphne server started for this test session."""
    _, base = processes.start_web(WEB_PORT, name="pages-web")
    return base
