"""A web process of our own (uvicorn, as the Procfile runs it) on a free port, which a
test may kill and start again on the same port, for the client package's tests."""

from __future__ import annotations

import signal
import socket
import subprocess
from types import SimpleNamespace

import pytest

from tests.conftest import url_answers, wait_for
from tests.live.conftest import server_start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RestartableWeb:
    def __init__(self, log_dir, *, env: dict | None = None) -> None:
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.env = env or {}
        self.starts = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"uvicorn-{self.starts}.log"
        argv = [
            "uvicorn", "agentbus_site.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
            "--ws", "websockets", "--lifespan", "off", "--no-access-log",
        ]  # fmt: skip
        self.proc = server_start(argv, port=self.port, log_path=self.log_path, **self.env)
        wait_for(lambda: url_answers(self.http + "/healthz"), timeout=30, message="the web process to answer")

    def kill(self) -> None:
        """SIGKILL: every connection drops at once, nothing is closed cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def own_web(django_db_setup, redis_flushed, tmp_path_factory):
    web = RestartableWeb(tmp_path_factory.mktemp("own-web"))
    web.start()
    yield web
    web.stop()


@pytest.fixture
def token(alice) -> str:
    return alice._credentials["HTTP_AUTHORIZATION"].split()[1]


def web_namespace(web: RestartableWeb) -> SimpleNamespace:
    return SimpleNamespace(http=web.http, ws=web.ws)
