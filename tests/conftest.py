"""Shared fixtures: users with tokens, and real orchestrator/worker processes.

Processes started here run `manage.py` exactly as the Procfile does, against the test
database that pytest-django created and the test Redis database. Tests that use them
must commit their writes (``@pytest.mark.django_db(transaction=True)``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from django.conf import settings
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header(config) -> list[str]:
    from core.embedded import STARTED

    return [f"embedded {server.name} (none answered at the configured address): {server.url}" for server in STARTED]


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll until ``predicate()`` is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def database_url() -> str:
    """The URL of the database the tests use (pytest-django's test database)."""
    db = settings.DATABASES["default"]
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def process_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["DATABASE_URL"] = database_url()
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Processes:
    """Starts `manage.py` commands as real processes and stops them at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen] = []

    def start(self, *argv: str, env: dict | None = None, name: str | None = None) -> subprocess.Popen:
        name = name or argv[0]
        log_path = self.log_dir / f"{name}-{len(self.running)}.log"
        with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "manage.py", *argv],
                cwd=ROOT,
                env=process_env(**(env or {})),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.log_path = str(log_path)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in self.running:
            self.stop(proc)

    def output(self, proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text()

    def start_web(self, port: int, *, name: str = "web", env: dict | None = None) -> tuple[subprocess.Popen, str]:
        """The Procfile's web process (uvicorn) on 127.0.0.1:``port``, the server the
        browser and live tests drive; returns the process and its base URL once /healthz
        answers."""
        log_path = self.log_dir / f"{name}-{len(self.running)}.log"
        with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                procfile_command("web", HOST="127.0.0.1", PORT=str(port)),
                cwd=ROOT,
                env=process_env(**(env or {})),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.log_path = str(log_path)
        self.running.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: proc.poll() is not None or url_answers(base + "/healthz"), timeout=30, message=f"{name} to answer"
        )
        if proc.poll() is not None:
            pytest.fail(f"{name} exited:\n" + log_path.read_text()[-3000:])
        return proc, base


def procfile_command(process: str, **variables: str) -> list[str]:
    """The Procfile's command line for ``process``, with its ``${NAME:-default}``
    variables filled in, run with this interpreter's environment."""
    import re
    import shlex

    for line in (ROOT / "Procfile").read_text().splitlines():
        kind, _, command = line.partition(":")
        if kind.strip() == process:
            filled = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), command.strip())
            argv = shlex.split(filled)
            if argv[0] == "python":
                return [sys.executable, *argv[1:]]
            return [str(Path(sys.executable).parent / argv[0]), *argv[1:]]
    raise LookupError(f"no {process!r} process in the Procfile")


def url_answers(url: str) -> bool:
    """True when ``url`` answers 200 (a server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_flushed(django_db_setup):
    from core.redis import redis_client

    redis_client().flushdb()
    return redis_client()


@pytest.fixture(scope="session")
def processes(django_db_setup, redis_flushed, tmp_path_factory):
    procs = Processes(tmp_path_factory.mktemp("process-logs"))
    yield procs
    procs.stop_all()


def worker_registered(redis, queue: str = "default") -> bool:
    from rq import Worker

    return any(queue in w.queue_names() for w in Worker.all(connection=redis))


@pytest.fixture(scope="module")
def pipeline(processes, redis_flushed):
    """A running orchestrator and one worker, shared by the tests of one module.

    Module scope, so that tests which drive the orchestrator's steps themselves (in
    other modules) never race a background orchestrator on the same database."""
    orchestrator = processes.start("orchestrate", name="orchestrator")
    worker = processes.start("rqworker", "default", name="worker")
    from orchestration.leader import leader_identity

    wait_for(leader_identity, timeout=30, message="the orchestrator to lead")
    wait_for(lambda: worker_registered(redis_flushed), timeout=30, message="the worker to register")
    yield SimpleNamespace(orchestrator=orchestrator, worker=worker, processes=processes)
    processes.stop(worker)
    processes.stop(orchestrator)


def chroma_model_seed() -> None:
    """Put Chroma's default embedding model where Chroma looks, from the shared folder
    beside the clone (offline machines); a machine with internet needs nothing."""
    for shared in (ROOT.parent / "shared", Path("/work/shared")):
        script = shared / "bin" / "seed-chroma-model"
        if script.exists():
            subprocess.run([str(script)], check=True, capture_output=True)
            return


@pytest.fixture(scope="session")
def chroma_server(processes, tmp_path_factory):
    """A Chroma server at CHROMA_URL, started with `manage.py chroma_serve` on a temporary
    --path, or the one already answering on that port."""
    from memory.chroma import chroma_heartbeat

    chroma_model_seed()
    if not chroma_heartbeat():
        processes.start("chroma_serve", "--path", str(tmp_path_factory.mktemp("chroma")), name="chroma")
        wait_for(chroma_heartbeat, timeout=60, interval=0.2, message=f"chroma at {settings.CHROMA_URL}")
    return settings.CHROMA_URL


def make_user(username: str, *, staff: bool = False):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password="pw-" + username, is_staff=staff)


def client_for(user) -> APIClient:
    from accounts.models import ApiToken

    _, raw = ApiToken.issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    client.user = user
    return client


@pytest.fixture
def alice(db):
    return client_for(make_user("alice"))


@pytest.fixture
def bob(db):
    return client_for(make_user("bob"))


def job_wait(job_id, *, timeout: float = 30.0, statuses=("succeeded", "failed", "cancelled")):
    from jobs.models import Job

    def finished():
        job = Job.objects.get(pk=job_id)
        return job if job.status in statuses else None

    return wait_for(finished, timeout=timeout, message=f"job {job_id} to reach {statuses}")


def plan(*tasks: dict) -> dict:
    return {"tasks": list(tasks)}
