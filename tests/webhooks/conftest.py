from __future__ import annotations

import threading

import pytest

from examples.webhook_receiver import Receiver


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 (a free port) that verifies every signature."""
    servers = []

    def start(*, secret: str, fail_first: int = 0, redirect: bool = False) -> Receiver:
        server = Receiver(("127.0.0.1", 0), secret=secret, fail_first=fail_first, redirect=redirect)
        server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
