"""What jobs/dashboard/ hands the templates: the graph's layout, the event log's lines
and what a large job's page reads. The rendered pages are in test_pages.py."""

from __future__ import annotations

import pytest

from jobs.dashboard.event_log import event_describe, job_event_log
from jobs.dashboard.graph import COL_GAP, NODE_W, PAD, GraphNode, graph_layout
from jobs.events import NewEvent, events_append
from jobs.models import Job, JobStatus, Task
from tests.conftest import make_user
from tests.pages.test_pages import _queries, browser


def test_the_graph_puts_each_task_one_column_right_of_its_deepest_parent():
    nodes = [GraphNode(key, "echo", "pending") for key in ("a", "b", "c", "d")]
    # d waits for a directly and for a through b and c: its depth is the longest chain.
    graph = graph_layout(nodes, {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]})
    column = {n.key: (n.x - PAD) // (NODE_W + COL_GAP) for n in graph.nodes}
    assert column == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert {(e.source.key, e.target.key) for e in graph.edges} == {("a", "b"), ("b", "c"), ("a", "d"), ("c", "d")}
    assert graph.width == PAD * 2 + 4 * NODE_W + 3 * COL_GAP


def test_the_graph_ignores_a_dependency_on_a_task_it_does_not_have():
    nodes = [GraphNode("a", "echo", "pending"), GraphNode("b", "echo", "pending")]
    graph = graph_layout(nodes, {"a": ["ghost"], "b": ["a"]})
    assert [n.key for n in graph.nodes] == ["a", "b"]
    assert [(e.source.key, e.target.key) for e in graph.edges] == [("a", "b")]


@pytest.mark.django_db
def test_the_event_log_says_of_each_event_what_the_events_own_message_says():
    owner = make_user("erin")
    job = Job.objects.create(owner=owner, plan={"tasks": []}, status=JobStatus.RUNNING)
    task = Task.objects.create(job=job, key="fetch", agent="echo", queue="default")
    events_append(
        job.id,
        [
            NewEvent("task.status", task_id=task.id, status="running", data={"attempt": 1}),
            NewEvent("task.progress", task_id=task.id, data={"progress": 0.5, "message": "half"}),
            NewEvent("task.retry", task_id=task.id, status="pending", data={"attempt": 1, "error": "x", "retry_in": 2}),
            NewEvent("task.status", task_id=task.id, status="failed", data={"key": "fetch", "error": "boom"}),
            NewEvent("job.status", status="failed", data={"error": "fetch failed"}),
        ],
    )
    keys = {str(task.id): "fetch"}
    lines = job_event_log(job, keys=keys, size=10)
    events = list(job.events.order_by("seq"))
    assert [(line.seq, line.type, line.at) for line in lines] == [(e.seq, e.type, e.at) for e in events]
    assert [line.text for line in lines] == [event_describe(e.as_message(), keys) for e in events]
    assert lines[1].text == "fetch progress 50% half"
    # The last ``size`` events, still oldest first.
    assert [line.seq for line in job_event_log(job, keys=keys, size=2)] == [events[-2].seq, events[-1].seq]


@pytest.mark.django_db
def test_an_opened_task_of_a_large_job_reads_its_whole_row_in_one_more_query():
    owner = make_user("erin")
    job = Job.objects.create(owner=owner, plan={"tasks": []}, status=JobStatus.RUNNING)
    Task.objects.bulk_create(
        Task(job=job, key=f"t{i}", agent="echo", queue="q-special", input={"n": i}, worker=f"w{i}", timeout=77)
        for i in range(40)
    )
    client = browser(owner)
    live = _queries(client, f"/app/jobs/{job.id}?fragment=live")
    assert _queries(client, f"/app/jobs/{job.id}?fragment=task&key=t7") == live + 1
    body = client.get(f"/app/jobs/{job.id}?fragment=task&key=t7").content.decode()
    assert "q-special" in body and "w7" in body and "77s" in body and "&quot;n&quot;: 7" in body
