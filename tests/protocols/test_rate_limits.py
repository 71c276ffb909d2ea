"""The MCP and A2A endpoints count against the user's REST rate limit, in Redis, so one
budget holds over every protocol and every web replica."""

from __future__ import annotations

import httpx
import pytest

from tests.clients.conftest import RestartableWeb
from tests.protocols.conftest import raw_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def throttled_web(django_db_setup, redis_flushed, tmp_path):
    web = RestartableWeb(tmp_path, env={"THROTTLE_USER_RATE": "4/min"})
    web.start()
    yield web
    web.stop()


def test_rest_mcp_and_a2a_share_the_users_rate_limit(throttled_web, alice):
    headers = {"Authorization": f"Bearer {raw_token(alice)}", "Accept": "application/json, text/event-stream"}
    mcp = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    a2a = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "00000000-0000-0000-0000-000000000000"}}

    def answers() -> list[int]:
        with httpx.Client(base_url=throttled_web.http, headers=headers, timeout=10) as http:
            return [
                http.get("/jobs").status_code,
                http.post("/mcp", json=mcp).status_code,
                http.post("/a2a", json=a2a, headers={"A2A-Version": "1.0"}).status_code,
                http.get("/jobs").status_code,
                http.post("/mcp", json=mcp).status_code,
                http.post("/a2a", json=a2a, headers={"A2A-Version": "1.0"}).status_code,
            ]

    statuses = answers()
    assert statuses[:4] == [200, 200, 200, 200]
    assert statuses[4:] == [429, 429]
    with httpx.Client(base_url=throttled_web.http, headers=headers, timeout=10) as http:
        refused = http.post("/mcp", json=mcp)
    assert refused.json()["error"] == "throttled" and int(refused.headers["retry-after"]) >= 1
