"""The dashboard pages over Django's test client: who sees what, the forms, the graph
and the timeline as rendered HTML. The browser tests drive the same pages live."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from jobs.events import NewEvent, events_append
from jobs.models import Job, JobStatus, Task, TaskStatus
from tests.conftest import make_user, plan

DIAMOND = plan(
    {"key": "a", "agent": "echo"},
    {"key": "b", "agent": "echo", "depends_on": ["a"]},
    {"key": "c", "agent": "echo", "depends_on": ["a"]},
    {"key": "d", "agent": "echo", "depends_on": ["b", "c"]},
)


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_job(owner, *, requirements="diamond", status=JobStatus.SUBMITTED, tasks: dict | None = None) -> Job:
    """A job with Task rows in the given statuses ({key: status}), as the orchestrator
    would have written them for the DIAMOND plan."""
    job = Job.objects.create(owner=owner, requirements=requirements, plan=DIAMOND, status=status)
    for spec in DIAMOND["tasks"]:
        if tasks and spec["key"] in tasks:
            Task.objects.create(
                job=job, key=spec["key"], agent="echo", queue="default",
                depends_on=spec.get("depends_on", []), status=tasks[spec["key"]],
            )  # fmt: skip
    return job


@pytest.fixture
def carol(db):
    return make_user("carol")


@pytest.fixture
def dave(db):
    return make_user("dave")


def test_the_dashboard_sends_a_visitor_to_the_login_page(client):
    response = client.get("/app/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/app/")
    assert client.get("/").headers["Location"] == "/app/"


def test_a_user_logs_in_with_the_login_form_and_lands_on_the_dashboard(carol):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = client.post(
        "/accounts/login/", {"username": "carol", "password": "pw-carol", "csrfmiddlewaretoken": token, "next": "/app/"}
    )
    assert response.status_code == 302 and response["Location"] == "/app/"
    assert client.get("/app/").status_code == 200


def test_a_wrong_password_shows_the_form_again_with_an_error(carol):
    response = Client().post("/accounts/login/", {"username": "carol", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_the_job_list_shows_only_the_users_own_jobs(carol, dave):
    mine = make_job(carol, requirements="carol's report")
    make_job(dave, requirements="dave's secret")
    html = browser(carol).get("/app/").content.decode()
    assert "carol&#x27;s report" in html
    assert "dave" not in html
    assert f'data-job="{mine.id}"' in html


def test_staff_see_every_users_jobs_and_can_filter_by_owner(carol, dave):
    make_job(carol, requirements="carol's report")
    make_job(dave, requirements="dave's plan")
    staff = browser(make_user("sam", staff=True))
    html = staff.get("/app/").content.decode()
    assert "carol&#x27;s report" in html and "dave&#x27;s plan" in html
    html = staff.get("/app/?owner=dave").content.decode()
    assert "dave&#x27;s plan" in html and "carol&#x27;s report" not in html


def test_the_job_list_filters_by_status_and_searches_requirements_and_ids(carol):
    done = make_job(carol, requirements="weekly sales report", status=JobStatus.SUCCEEDED)
    make_job(carol, requirements="translate the manual", status=JobStatus.FAILED)
    client = browser(carol)

    html = client.get("/app/?status=succeeded").content.decode()
    assert "weekly sales report" in html and "translate the manual" not in html

    html = client.get("/app/?q=MANUAL").content.decode()
    assert "translate the manual" in html and "weekly sales report" not in html

    html = client.get(f"/app/?q={str(done.id)[:8]}").content.decode()
    assert "weekly sales report" in html and "translate the manual" not in html

    html = client.get("/app/?status=running").content.decode()
    assert "No job matches these filters." in html


def test_an_unknown_status_filter_is_ignored_rather_than_an_error(carol):
    make_job(carol, requirements="anything")
    response = browser(carol).get("/app/?status=bogus&page=99")
    assert response.status_code == 200
    assert "anything" in response.content.decode()


def test_the_job_list_shows_progress_by_task_outcome(carol):
    make_job(
        carol, status=JobStatus.RUNNING,
        tasks={"a": TaskStatus.SUCCEEDED, "b": TaskStatus.RUNNING, "c": TaskStatus.SUCCEEDED, "d": TaskStatus.PENDING},
    )  # fmt: skip
    html = browser(carol).get("/app/").content.decode()
    assert '<span class="count">2/4</span>' in html
    assert 'class="seg-succeeded" style="width:50.0%"' in html


def test_the_results_fragment_is_the_list_without_the_page_around_it(carol):
    make_job(carol, requirements="fragment me")
    html = browser(carol).get("/app/?fragment=results").content.decode()
    assert "fragment me" in html
    assert "<html" not in html


def test_another_users_job_page_is_a_404_page(carol, dave):
    job = make_job(dave)
    response = browser(carol).get(f"/app/jobs/{job.id}")
    assert response.status_code == 404
    assert "text/html" in response["Content-Type"]
    assert "belongs to someone else" in response.content.decode()
    assert browser(carol).post(f"/app/jobs/{job.id}/cancel").status_code == 404
    assert browser(carol).post(f"/app/jobs/{job.id}/retry").status_code == 404
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUBMITTED


def test_the_job_page_draws_the_plan_before_the_orchestrator_writes_tasks(carol):
    job = make_job(carol)
    html = browser(carol).get(f"/app/jobs/{job.id}").content.decode()
    nodes = re.findall(r'<g class="node st-(\w+)" data-key="(\w+)"', html)
    assert sorted(nodes) == [("pending", "a"), ("pending", "b"), ("pending", "c"), ("pending", "d")]
    assert html.count('class="edge') == 4


def test_the_graph_colours_nodes_by_status_and_lays_them_out_by_depth(carol):
    job = make_job(
        carol, status=JobStatus.FAILED,
        tasks={"a": TaskStatus.SUCCEEDED, "b": TaskStatus.FAILED, "c": TaskStatus.SUCCEEDED, "d": TaskStatus.SKIPPED},
    )  # fmt: skip
    html = browser(carol).get(f"/app/jobs/{job.id}").content.decode()
    nodes = {
        key: (status, int(x))
        for status, key, x in re.findall(
            r'<g class="node st-(\w+)" data-key="(\w+)" data-task-id="[^"]*" data-status="\w+" transform="translate\((\d+),',
            html,
        )
    }
    assert {k: s for k, (s, _) in nodes.items()} == {"a": "succeeded", "b": "failed", "c": "succeeded", "d": "skipped"}
    # Depth decides the column: a, then b and c side by side, then d.
    assert nodes["a"][1] < nodes["b"][1] == nodes["c"][1] < nodes["d"][1]
    # An edge out of a succeeded task is drawn as satisfied; out of a failed one, blocked.
    assert re.search(r'class="edge ready"[^>]*data-from="a" data-to="b"', html)
    assert re.search(r'class="edge blocked"[^>]*data-from="b" data-to="d"', html)
    assert 'id="retry-button"' in html and 'id="cancel-button"' not in html


def test_the_timeline_shows_when_a_task_waited_ran_and_backed_off(carol):
    job = make_job(carol, status=JobStatus.RUNNING, tasks={"a": TaskStatus.RUNNING})
    task = Task.objects.get(job=job, key="a")
    events_append(job.id, [NewEvent("task.status", task_id=task.id, status="queued", data={"key": "a", "attempt": 1})])
    events_append(
        job.id,
        [NewEvent("task.status", task_id=task.id, status="running", data={"key": "a", "attempt": 1, "worker": "w1"})],
    )
    events_append(
        job.id,
        [
            NewEvent(
                "task.retry",
                task_id=task.id,
                status="pending",
                data={"key": "a", "attempt": 1, "error": "boom", "retry_in": 0.5},
            )
        ],
    )
    events_append(job.id, [NewEvent("task.status", task_id=task.id, status="queued", data={"key": "a", "attempt": 2})])
    events_append(job.id, [NewEvent("task.status", task_id=task.id, status="running", data={"key": "a", "attempt": 2})])
    # Spread the events over time, as they would be.
    base = timezone.now() - timedelta(seconds=10)
    Job.objects.filter(pk=job.pk).update(created_at=base)
    Task.objects.filter(pk=task.pk).update(created_at=base)
    for i, event in enumerate(job.events.order_by("seq")):
        type(event).objects.filter(pk=event.pk).update(at=base + timedelta(seconds=i + 1))

    html = browser(carol).get(f"/app/jobs/{job.id}").content.decode()
    track = html.split('class="tl-track" data-key="a"')[1].split("</div>")[0]
    kinds = re.findall(r'class="seg (\w+)', track)
    assert kinds == ["blocked", "queued", "running", "backoff", "queued", "running"]
    assert "end-pending" in track  # the first run ended in a retry
    assert "attempt 1 failed: boom (retry in 0.5s)" in html
    assert "attempt 1 started on w1" in html
    assert "a attempt 1 failed, retry in 0.5s: boom" in html  # the event log


def test_the_live_fragment_renders_every_region_but_the_event_log(carol):
    job = make_job(carol)
    html = browser(carol).get(f"/app/jobs/{job.id}?fragment=live").content.decode()
    assert set(re.findall(r'data-region="(\w+)"', html)) == {"head", "facts", "graph", "timeline", "tasks", "result"}
    assert "event-log" not in html


def test_the_submit_form_creates_the_job_and_opens_its_page(carol):
    client = browser(carol)
    form = client.get("/app/jobs/new").content.decode()
    assert "&quot;key&quot;: &quot;fetch&quot;" in form  # the diamond example is filled in
    response = client.post(
        "/app/jobs/new",
        {
            "requirements": "two steps",
            "plan": '{"tasks": [{"key": "x", "agent": "echo"}]}',
            "priority": "3",
            "form_key": "k1",
        },
    )
    job = Job.objects.get(owner=carol)
    assert response.status_code == 302 and response["Location"] == f"/app/jobs/{job.id}"
    assert (job.requirements, job.priority, job.plan["tasks"][0]["key"]) == ("two steps", 3, "x")


def test_posting_the_same_form_twice_makes_one_job_but_an_edited_form_makes_another(carol):
    client = browser(carol)
    body = {"requirements": "once", "plan": '{"tasks": [{"key": "x", "agent": "echo"}]}', "form_key": "same"}
    first = client.post("/app/jobs/new", body)
    second = client.post("/app/jobs/new", body)
    assert first["Location"] == second["Location"]
    assert Job.objects.filter(owner=carol).count() == 1
    client.post("/app/jobs/new", {**body, "requirements": "edited"})
    assert Job.objects.filter(owner=carol).count() == 2


@pytest.mark.parametrize(
    ("plan_text", "field", "message"),
    [
        ('{"tasks": [', "plan", "is not valid JSON"),
        ('{"tasks": [{"key": "x", "agent": "nope"}]}', "plan.tasks[0].agent", "unknown agent"),
        ('{"tasks": []}', "plan.tasks", ""),
        ("", "plan", "required"),
    ],
)
def test_a_bad_plan_is_shown_again_with_the_problem_under_the_field(carol, plan_text, field, message):
    response = browser(carol).post("/app/jobs/new", {"requirements": "r", "plan": plan_text, "form_key": "k"})
    assert response.status_code == 400
    html = response.content.decode()
    assert f"<code>{field}</code>: {message}" in html.replace("&#x27;", "'")
    assert plan_text.replace('"', "&quot;") in html  # what was typed is kept
    assert not Job.objects.exists()


def test_a_bad_priority_is_reported_on_its_field(carol):
    body = {"requirements": "r", "plan": '{"tasks": [{"key": "x", "agent": "echo"}]}', "priority": "high"}
    response = browser(carol).post("/app/jobs/new", body)
    assert response.status_code == 400
    assert "must be a whole number" in response.content.decode()
    response = browser(carol).post("/app/jobs/new", {**body, "priority": "1000"})
    assert response.status_code == 400
    assert "Ensure this value is less than or equal to 100" in response.content.decode()
    assert not Job.objects.exists()


def test_every_form_needs_its_csrf_token(carol):
    job = make_job(carol)
    client = Client(enforce_csrf_checks=True)
    client.force_login(carol)
    assert client.post("/app/jobs/new", {"requirements": "r", "plan": "{}"}).status_code == 403
    assert client.post(f"/app/jobs/{job.id}/cancel").status_code == 403
    assert client.post(f"/app/jobs/{job.id}/retry").status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUBMITTED


def test_the_cancel_button_cancels_the_job(carol):
    job = make_job(carol, status=JobStatus.RUNNING, tasks={"a": TaskStatus.RUNNING})
    response = browser(carol).post(f"/app/jobs/{job.id}/cancel", follow=True)
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert Task.objects.get(job=job).status == TaskStatus.CANCELLED
    assert "Job cancelled" in response.content.decode()


def test_cancelling_a_finished_job_says_why_it_cannot(carol):
    job = make_job(carol, status=JobStatus.SUCCEEDED)
    response = browser(carol).post(f"/app/jobs/{job.id}/cancel", follow=True)
    assert "The job is already succeeded." in response.content.decode()


def test_the_pages_only_answer_the_methods_they_serve(carol):
    job = make_job(carol)
    assert browser(carol).get(f"/app/jobs/{job.id}/cancel").status_code == 405
    assert browser(carol).post("/app/").status_code == 405


def test_the_stylesheet_and_scripts_are_served_by_the_app(client):
    for path in (
        "agentbus/agentbus.css",
        "agentbus/live.js",
        "agentbus/job.js",
        "agentbus/jobs.js",
        "admin/css/base.css",
    ):
        response = client.get(f"/static/{path}")
        assert response.status_code == 200, path
        b"".join(response.streaming_content if response.streaming else [response.content])


def test_the_middleware_chain_runs_in_one_thread_under_asgi_and_static_files_still_come():
    """Django builds the chain from the last middleware out: a sync-only one last makes
    every middleware run sync, in the one thread a request enters once. With an
    async-capable middleware last, each one's process_request and process_response
    crossed into a thread of its own. The static files still come through the ASGI
    handler."""
    import asyncio

    from django.conf import settings
    from django.test import AsyncClient
    from django.utils.module_loading import import_string

    last = import_string(settings.MIDDLEWARE[-1])
    assert getattr(last, "sync_capable", True) and not getattr(last, "async_capable", False), last

    async def fetch():
        client = AsyncClient()
        response = await client.get("/static/agentbus/agentbus.css")
        body = b"".join([chunk async for chunk in response]) if response.streaming else response.content
        return response.status_code, body, (await client.get("/static/agentbus/nothing-here.css")).status_code

    code, body, missing = asyncio.run(fetch())
    assert code == 200 and b"{" in body
    assert missing == 404


def test_the_job_page_lists_each_tasks_review_gates_and_artifacts(carol):
    from django.core.files.base import ContentFile

    from jobs.models import Artifact, Review

    job = make_job(carol, status=JobStatus.RUNNING, tasks={"a": TaskStatus.SUCCEEDED, "b": TaskStatus.AWAITING_REVIEW})
    a, b = Task.objects.get(job=job, key="a"), Task.objects.get(job=job, key="b")
    artifact = Artifact(job=job, task=a, name="report.csv", content_type="text/csv", size=11)
    artifact.file.save("report.csv", ContentFile(b"a,b\n1,2\n3,4"), save=True)
    review = Review.objects.create(job=job, task=b, kind="after", proposed={"x": 1})
    plan_review = Review.objects.create(job=job, kind="plan", status="decided", decision="approve", proposed=DIAMOND)

    html = browser(carol).get(f"/app/jobs/{job.id}").content.decode()
    assert f'href="/jobs/{job.id}/artifacts/{artifact.id}"' in html and "report.csv" in html
    assert f'href="/app/reviews/{review.id}"' in html
    assert f"/app/reviews/{plan_review.id}" not in html  # decided: nothing to act on
    assert '<g class="node st-awaiting_review" data-key="b"' in html
    artifact.file.delete(save=False)


def test_staff_see_orchestrator_worker_and_queue_health_on_the_dashboard(carol):
    staff = browser(make_user("sam", staff=True))
    html = staff.get("/app/").content.decode()
    assert 'aria-label="System"' in html and "QUEUES" in html and "<b>default</b>" in html
    assert 'aria-label="System"' not in browser(carol).get("/app/").content.decode()


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_list_and_its_live_refresh_cost_the_same_queries_for_3_jobs_or_30(carol):
    client = browser(carol)
    for _ in range(3):
        make_job(carol, status=JobStatus.RUNNING, tasks={"a": TaskStatus.SUCCEEDED, "b": TaskStatus.RUNNING})
    few = _queries(client, "/app/?fragment=results")
    for _ in range(27):
        make_job(carol, status=JobStatus.RUNNING, tasks={"a": TaskStatus.SUCCEEDED, "b": TaskStatus.RUNNING})
    assert _queries(client, "/app/?fragment=results") == few <= 7


def test_the_job_page_costs_the_same_queries_for_a_small_or_a_large_job(carol):
    client = browser(carol)
    small = make_job(carol, status=JobStatus.RUNNING, tasks={"a": TaskStatus.RUNNING})
    large = Job.objects.create(owner=carol, plan={"tasks": []}, status=JobStatus.RUNNING)
    Task.objects.bulk_create(
        Task(job=large, key=f"t{i}", agent="echo", queue="default", depends_on=[f"t{i - 1}"] if i else [])
        for i in range(60)
    )
    for task in Task.objects.filter(job=large):
        events_append(large.id, [NewEvent("task.status", task_id=task.id, status="queued", data={"key": task.key})])
    assert _queries(client, f"/app/jobs/{large.id}") == _queries(client, f"/app/jobs/{small.id}")
    assert _queries(client, f"/app/jobs/{large.id}?fragment=live") <= 9


def test_a_large_jobs_task_details_load_when_opened(carol):
    job = Job.objects.create(owner=carol, plan={"tasks": []}, status=JobStatus.RUNNING)
    Task.objects.bulk_create(
        Task(job=job, key=f"t{i}", agent="echo", queue="default", input={"n": i}) for i in range(40)
    )
    client = browser(carol)
    html = client.get(f"/app/jobs/{job.id}").content.decode()
    assert f'data-lazy="/app/jobs/{job.id}?fragment=task&amp;key=t7"' in html
    assert "&quot;n&quot;: 7" not in html
    body = client.get(f"/app/jobs/{job.id}?fragment=task&key=t7").content.decode()
    assert '<div class="task-body">' in body and "&quot;n&quot;: 7" in body
    assert client.get(f"/app/jobs/{job.id}?fragment=task&key=nope").status_code == 404


def test_the_form_can_ask_for_the_plan_to_be_reviewed_first(carol):
    body = {"requirements": "r", "plan": '{"tasks": [{"key": "x", "agent": "echo"}]}', "review_plan": "on"}
    browser(carol).post("/app/jobs/new", body)
    assert Job.objects.get(owner=carol).review_plan is True
