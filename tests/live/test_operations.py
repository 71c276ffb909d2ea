"""Operating it: Prometheus metrics from web, orchestrator and workers, GET /system,
and structured logs, against real processes."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from types import SimpleNamespace

import pytest
from django.test import Client

from core.logging import JsonFormatter, log_context
from core.queue import TaskMessage, queue_get, tasks_enqueue
from jobs.models import Job, Task
from tests.conftest import (
    client_for,
    job_wait,
    make_user,
    plan,
    wait_for,
    worker_registered,
)
from tests.live.conftest import WEB_PORT

pytestmark = pytest.mark.django_db(transaction=True)

ORCHESTRATOR_METRICS = WEB_PORT + 2
WORKER_METRICS = WEB_PORT + 3


@pytest.fixture(scope="module")
def ops_pipeline(processes, redis_flushed):
    """An orchestrator and a worker that serve metrics and log JSON."""
    from orchestration.leader import leader_identity

    orchestrator = processes.start(
        "orchestrate", name="orchestrator-ops", env={"AGENTBUS_METRICS_PORT": str(ORCHESTRATOR_METRICS)}
    )
    worker = processes.start(
        "rqworker",
        "default",
        name="worker-ops",
        env={"AGENTBUS_METRICS_PORT": str(WORKER_METRICS), "LOG_FORMAT": "json", "RQ_LOG_LEVEL": "INFO"},
    )
    wait_for(leader_identity, timeout=30, message="the orchestrator to lead")
    wait_for(lambda: worker_registered(redis_flushed), timeout=30, message="the worker to register")
    yield SimpleNamespace(orchestrator=orchestrator, worker=worker, processes=processes)
    processes.stop(worker)
    processes.stop(orchestrator)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None if absent."""
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_web_metrics_expose_jobs_and_tasks_by_status_and_the_queues(db, settings):
    owner = make_user("metrics-owner")
    for status in ("succeeded", "succeeded", "failed"):
        Job.objects.create(owner=owner, plan={"tasks": []}, status=status)
    job = Job.objects.create(owner=owner, plan={"tasks": []}, status="running")
    task = Task.objects.create(job=job, key="t", agent="echo", queue="default", status="queued", attempt=1)
    queue = queue_get("default")
    queue.empty()
    tasks_enqueue([TaskMessage(str(task.id), 1, "default", 30)])

    settings.AGENTBUS_METRICS_TOKEN = "scrape"  # required with DEBUG off
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert sample(text, "agentbus_jobs", status="succeeded") == 2
    assert sample(text, "agentbus_jobs", status="failed") == 1
    assert sample(text, "agentbus_jobs", status="cancelled") == 0  # every status, zeros included
    assert sample(text, "agentbus_tasks", status="queued") == 1
    assert sample(text, "agentbus_queue_depth", queue="default") == 1
    assert sample(text, "agentbus_queue_oldest_age_seconds", queue="default") >= 0
    assert sample(text, "agentbus_orchestrator_leader") is not None
    assert "django_http_requests_total_by_method_total" in text  # django-prometheus, per request
    queue.empty()


def test_metrics_can_require_a_token(db, settings):
    settings.AGENTBUS_METRICS_TOKEN = "scrape-secret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_orchestrator_and_worker_serve_task_metrics_on_their_ports(ops_pipeline):
    alice = client_for(make_user("ops-alice"))
    body = {"plan": plan({"key": "a", "agent": "echo"}, {"key": "f", "agent": "flaky", "input": {"succeed_on": 2}})}
    response = alice.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    assert job_wait(response.json()["id"]).status == "succeeded"

    worker = scrape(WORKER_METRICS)
    assert sample(worker, "agentbus_task_duration_seconds_count", agent="echo", outcome="succeeded") >= 1
    assert sample(worker, "agentbus_task_duration_seconds_count", agent="flaky", outcome="error") >= 1
    assert sample(worker, "agentbus_task_retries_total", agent="flaky") >= 1
    assert sample(worker, "agentbus_events_published_total", type="task.status") >= 1

    # The job finished in the worker that committed its last result; the orchestrator
    # only dispatched the flaky task's retry when its backoff fell due.
    assert sample(worker, "agentbus_jobs_finished_total", status="succeeded") >= 1
    orchestrator = scrape(ORCHESTRATOR_METRICS)
    assert sample(orchestrator, "agentbus_events_published_total", type="task.status") >= 1


def test_the_worker_logs_json_lines_naming_the_task_and_attempt(ops_pipeline):
    alice = client_for(make_user("ops-logs"))
    response = alice.post("/jobs", {"plan": plan({"key": "a", "agent": "echo"})}, format="json")
    job = job_wait(response.json()["id"])
    task = Task.objects.get(job=job)

    def lines_about_the_task():
        lines = [
            json.loads(line)
            for line in ops_pipeline.processes.output(ops_pipeline.worker).splitlines()
            if line.startswith("{")
        ]
        return [line for line in lines if line.get("task_id") == str(task.id)]

    about = wait_for(lines_about_the_task, timeout=5, message="a log line about the task")
    assert all(line["attempt"] == "1" and line["level"] and line["ts"] for line in about)


def test_the_json_formatter_carries_context_ids_extra_fields_and_tracebacks():
    record = logging.LogRecord("agentbus.test", logging.ERROR, __file__, 1, "advancing %s failed", ("job",), None)
    record.queue = "default"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    with log_context(job_id="j-1", task_id="t-1"):
        line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "advancing job failed"
    assert (line["job_id"], line["task_id"], line["queue"], line["level"]) == ("j-1", "t-1", "default", "ERROR")
    assert "RuntimeError: boom" in line["exc"]
    assert "job_id" not in json.loads(JsonFormatter().format(record))  # the context ended


def test_system_shows_staff_the_orchestrators_workers_and_queues_with_heartbeats(ops_pipeline):
    staff = client_for(make_user("ops-staff", staff=True))

    def leader_seen():
        body = staff.get("/system").json()
        return body if body["orchestrators"]["instances"] else None

    body = wait_for(leader_seen, timeout=10, message="an orchestrator heartbeat")
    leader = body["orchestrators"]["instances"][0]
    assert leader["role"] == "leader" and leader["identity"] == body["orchestrators"]["leader"]
    assert leader["heartbeat_age_seconds"] < 5
    worker = next(w for w in body["workers"] if "default" in w["queues"])
    assert worker["last_heartbeat"] and worker["state"] in ("idle", "busy")
    assert set(body["queues"]["default"]) >= {"depth", "oldest_age_seconds", "running", "failed"}


def test_system_is_for_staff_only(db):
    assert client_for(make_user("not-staff")).get("/system").status_code == 403
    anonymous = Client().get("/system")
    assert anonymous.status_code == 401
    assert set(anonymous.json()) >= {"error", "detail"}
