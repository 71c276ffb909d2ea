"""The fault lab: a private Redis server, and orchestrators and workers started against
it, so a test can flush or restart Redis, or SIGKILL a process, without touching the
Redis or the processes other tests share.

The test process itself is pointed at the lab's Redis too (``settings.REDIS_URL``), so
the hints that ``POST /jobs`` sends on commit go where the lab's orchestrator listens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import pytest
import redis as redis_lib
from django.conf import settings

import tests.faults.agents  # registers the lab agents in the test process
from core.redis import redis_reset
from tests.conftest import wait_for
from tests.faults.servers import RedisServer

LAB_REDIS_PORT = int(os.environ.get("AGENTBUS_LAB_REDIS_PORT", "8150"))


class Lab:
    def __init__(self, processes, server: RedisServer, url: str | None = None) -> None:
        self.processes = processes
        self.server = server
        self.url = url or server.url
        self.redis = redis_lib.Redis.from_url(self.url)
        self.started: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict:
        modules = [*settings.AGENTBUS_AGENT_MODULES, "tests.faults.agents"]
        queues = dict.fromkeys([*settings.AGENTBUS_QUEUES, tests.faults.agents.FAULTS_QUEUE])
        return {
            "REDIS_URL": self.url,
            "AGENTBUS_AGENT_MODULES": ",".join(dict.fromkeys(modules)),
            "AGENTBUS_QUEUES": ",".join(queues),
            **extra,
        }

    def orchestrator(self, name: str = "orchestrator", **env: str) -> subprocess.Popen:
        proc = self.processes.start("orchestrate", env=self.env(**env), name=f"lab-{name}")
        self.started.append(proc)
        return proc

    def worker(self, name: str, **env: str) -> subprocess.Popen:
        proc = self.processes.start(
            "rqworker",
            tests.faults.agents.FAULTS_QUEUE,
            "--name",
            name,
            env=self.env(**env),
            name=f"lab-{name}",
        )
        proc.worker_name = name
        self.started.append(proc)
        return proc

    def wait_worker_ready(self, *procs: subprocess.Popen, timeout: float = 40) -> None:
        def registered() -> bool:
            names = {key.decode().rsplit(":", 1)[-1] for key in self.redis.smembers("rq:workers")}
            return all(p.worker_name in names for p in procs)

        wait_for(registered, timeout=timeout, message="lab workers to register")

    def leader_pid(self) -> int | None:
        value = self.redis.get("agentbus:orchestrator:leader")
        return int(value.decode().split(":")[1]) if value else None

    def wait_leader(self, timeout: float = 40) -> int:
        return wait_for(self.leader_pid, timeout=timeout, message="an orchestrator to lead")

    def log(self, proc: subprocess.Popen) -> str:
        return self.processes.output(proc)

    def stop_all(self) -> None:
        for proc in self.started:
            self.processes.stop(proc, signal.SIGKILL, timeout=5)


@pytest.fixture
def lab(processes, settings, tmp_path):
    server = RedisServer(LAB_REDIS_PORT, tmp_path).start()
    settings.REDIS_URL = server.url
    redis_reset()
    lab = Lab(processes, server)
    try:
        yield lab
    finally:
        lab.stop_all()
        server.stop()
        redis_reset()


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def sleep_plan(*keys_and_deps: tuple[str, list[str]], seconds: float = 0.3) -> dict:
    """A job body whose tasks sleep ``seconds`` each, wired by ``(key, depends_on)``."""
    tasks = [
        {
            "key": key,
            "agent": "lab_sleep",
            "input": {"seconds": seconds},
            "depends_on": deps,
        }
        for key, deps in keys_and_deps
    ]
    return {"requirements": "fault lab", "plan": {"tasks": tasks}}


def assert_settled_exactly_once(job_ids, *, status: str = "succeeded") -> None:
    """Every job reached ``status``; no task is left queued or running; no task has
    more than one committed result (one ``task.status succeeded`` event at most, and
    exactly one for a task that succeeded)."""
    from jobs.models import Job, JobEvent, Task

    jobs = {str(j.id): j.status for j in Job.objects.filter(id__in=job_ids)}
    assert jobs == {str(j): status for j in job_ids}
    tasks = list(Task.objects.filter(job_id__in=job_ids))
    assert not [t for t in tasks if t.status in ("queued", "running", "pending")]
    committed = Counter(
        JobEvent.objects.filter(job_id__in=job_ids, type="task.status", status="succeeded").values_list(
            "task_id", flat=True
        )
    )
    assert all(n == 1 for n in committed.values()), committed
    assert {t.id for t in tasks if t.status == "succeeded"} == set(committed)


def wait_jobs(job_ids, *, timeout: float = 60) -> None:
    from jobs.models import JOB_TERMINAL, Job

    def finished() -> bool:
        return Job.objects.filter(id__in=job_ids, status__in=JOB_TERMINAL).count() == len(job_ids)

    wait_for(
        finished,
        timeout=timeout,
        interval=0.2,
        message=f"{len(job_ids)} jobs to finish",
    )


def monotonic() -> float:
    return time.monotonic()
