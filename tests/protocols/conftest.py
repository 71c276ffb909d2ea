"""The protocol tests drive a real web process (uvicorn on agentbus_site.asgi, as the
Procfile runs it) with the official SDKs' clients, and start the SDKs' servers as peers."""

from __future__ import annotations

import pytest

from tests.clients.conftest import RestartableWeb


@pytest.fixture(scope="module")
def protocol_web(django_db_setup, redis_flushed, tmp_path_factory):
    web = RestartableWeb(tmp_path_factory.mktemp("protocol-web"))
    web.start()
    yield web
    web.stop()


def raw_token(client) -> str:
    return client._credentials["HTTP_AUTHORIZATION"].split()[1]
