"""Servers the fault and security tests start for themselves: a private redis-server
(plain, with an ACL user, or TLS only), so a test can flush, restart or lock down Redis
without touching the one other tests share."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis as redis_lib

from tests.conftest import wait_for


class RedisServer:
    """A throw-away redis-server with no persistence: a restart comes back empty."""

    def __init__(self, port: int, workdir: Path, *extra: str) -> None:
        self.port = port
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.extra],
            stdout=open(self.workdir / f"redis-{self.port}.log", "a"),  # noqa: SIM115 (lives as long as the server)
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._answers, timeout=10, message=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return redis_lib.Redis(port=self.port, socket_timeout=0.5).ping()
        except redis_lib.exceptions.ConnectionError:
            return False
        except redis_lib.exceptions.ResponseError:  # up, but wants a password
            return True

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def restart_empty(self) -> None:
        """Kill Redis and start it again with nothing in it, as after a crash."""
        self.stop()
        self.start()
