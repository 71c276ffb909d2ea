"""The dashboard: server-rendered pages for people, over the same services and
selectors as the REST API.

Each view picks its data with ``jobs.selectors`` and the rest of ``jobs.dashboard`` (or
writes with one ``jobs.services`` function) and hands it to a template under
``templates/jobs/``; another user's job is a 404 page. Live updates come from
the page's JavaScript (static/agentbus/), which follows the job's event log over the
websocket, or by polling ``GET /jobs/{id}/events`` when there is none, and asks for
the ``?fragment=`` variants below to redraw.
"""

from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.registry import agents_all
from core.errors import ApplicationError, flatten_errors
from core.json_policy import JSONPolicyError, json_loads
from jobs.dashboard.event_log import job_event_log
from jobs.dashboard.graph import job_graph
from jobs.dashboard.selectors import (
    dashboard_jobs,
    job_artifacts_by_task,
    job_reviews_by_task,
    job_status_counts,
    jobs_progress,
    system_summary,
)
from jobs.dashboard.timeline import job_status_events, job_timeline
from jobs.models import JOB_ACTIVE, JobStatus, Task
from jobs.selectors import job_get, job_tasks
from jobs.services import job_cancel, job_retry_failed, job_submit

JOBS_PER_PAGE = 25
TASK_BODIES_INLINE = 30
EVENT_LOG_SIZE = 300
# What the graph, the timeline and the task list read of a task when its details are not
# shown inline (jobs/job/_tasks.html, jobs/dashboard/graph.py, timeline.py).
TASK_LIST_FIELDS = (
    "id", "job_id", "key", "agent", "status", "depends_on", "created_at", "started_at", "finished_at",
    "progress", "progress_message", "attempt", "max_attempts", "sent_at", "wait_reason",
)  # fmt: skip

EXAMPLE_PLANS = {
    "single": {
        "title": "One echo task",
        "requirements": "Say hello",
        "plan": {"tasks": [{"key": "hello", "agent": "echo", "input": {"text": "hello, world"}}]},
    },
    "diamond": {
        "title": "Diamond DAG",
        "requirements": "Fetch, analyse two ways, then merge",
        "plan": {
            "tasks": [
                {"key": "fetch", "agent": "echo", "input": {"url": "https://example.org"}},
                {"key": "summarise", "agent": "echo", "depends_on": ["fetch"]},
                {"key": "classify", "agent": "echo", "depends_on": ["fetch"]},
                {"key": "report", "agent": "echo", "depends_on": ["summarise", "classify"]},
            ]
        },
    },
    "pipeline": {
        "title": "Fan-out, fan-in",
        "requirements": "Split a corpus, process the parts in parallel, combine",
        "plan": {
            "tasks": [
                {"key": "split", "agent": "echo", "input": {"parts": 3}},
                {"key": "part-1", "agent": "echo", "depends_on": ["split"], "input": {"part": 1}},
                {"key": "part-2", "agent": "echo", "depends_on": ["split"], "input": {"part": 2}},
                {"key": "part-3", "agent": "echo", "depends_on": ["split"], "input": {"part": 3}},
                {"key": "combine", "agent": "echo", "depends_on": ["part-1", "part-2", "part-3"]},
                {"key": "publish", "agent": "echo", "depends_on": ["combine"], "max_attempts": 2},
            ]
        },
    },
}


@login_required
@require_GET
def job_list_page(request: HttpRequest) -> HttpResponse:
    """/app/: the job list with status, progress, owner and age; filters and search.
    ``?fragment=results`` renders only the results, for the page's live refresh."""
    status = request.GET.get("status", "")
    if status not in JobStatus.values:
        status = ""
    q = request.GET.get("q", "")[:200]
    owner = request.GET.get("owner", "")[:150] if request.user.is_staff else ""
    jobs = dashboard_jobs(user=request.user, status=status or None, q=q, owner=owner)
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    progress = jobs_progress(rows)
    counts = job_status_counts(user=request.user)
    context = {
        "system": system_summary() if request.user.is_staff else None,
        "page": page,
        "rows": [(job, progress[job.id]) for job in rows],
        "status": status,
        "q": q,
        "owner": owner,
        "statuses": JobStatus.values,
        "chips": [(s, counts.get(s, 0)) for s in JobStatus.values if counts.get(s)],
        "total": sum(counts.values()),
        "filtered": bool(status or q or owner),
        "any_active": any(job.status in JOB_ACTIVE for job in rows),
        "query_without_page": _query_without(request, "page", "fragment"),
        "query_without_status": _query_without(request, "status", "page", "fragment"),
    }
    if request.GET.get("fragment") == "results":
        return render(request, "jobs/_job_results.html", context)
    return render(request, "jobs/job_list.html", context)


@login_required
@require_GET
def job_detail_page(request: HttpRequest, job_id) -> HttpResponse:
    """/app/jobs/{id}: graph, timeline, tasks and the event log.
    ``?fragment=live`` renders everything but the event log, for the live refresh."""
    job = job_get(user=request.user, job_id=job_id)
    if job.purged_at is not None:
        return job_purged_page(request, job)
    tasks_query = job_tasks(job=job)
    lazy_bodies = tasks_query.count() > TASK_BODIES_INLINE
    # A large job's task details load when opened: rendering (and reading) every task's
    # input, output and usage on each live redraw would cost far more than the API's JSON.
    tasks = list(tasks_query.only(*TASK_LIST_FIELDS) if lazy_bodies else tasks_query)
    now = timezone.now()
    timeline = job_timeline(job, tasks, job_status_events(job), now=now)
    graph = job_graph(job, tasks)
    artifacts, reviews = job_artifacts_by_task(job), job_reviews_by_task(job)
    for row in timeline.rows:
        row.artifacts = artifacts.get(row.task.id, [])
        row.reviews = reviews.get(row.task.id, [])
    context = {
        "job": job,
        "job_url": reverse("app-job", kwargs={"job_id": str(job.id)}),
        "graph": graph,
        "timeline": timeline,
        "title": _job_title(job),
        "duration": round(((job.finished_at or now) - (job.started_at or job.created_at)).total_seconds(), 1),
        "plan_reviews": reviews.get(None, []),
        "lazy_bodies": lazy_bodies,
        "can_cancel": job.status in JOB_ACTIVE,
        "can_retry": job.status in (JobStatus.FAILED, JobStatus.CANCELLED),
        "result_json": _pretty(job.result) if job.result is not None else "",
    }
    fragment = request.GET.get("fragment")
    if fragment == "live":
        return render(request, "jobs/_job_live.html", context)
    if fragment == "task":
        row = next((r for r in timeline.rows if r.task.key == request.GET.get("key")), None)
        if row is None:
            raise Http404("No such task.")
        if lazy_bodies:  # its details are what was asked for: the whole row, in one query
            row.task = tasks_query.get(pk=row.task.pk)
        return render(request, "jobs/job/_task_body.html", {"row": row, "job": job})
    keys = {str(t.id): t.key for t in tasks}
    log = job_event_log(job, keys=keys, size=EVENT_LOG_SIZE)
    context["event_log"] = log
    context["page_data"] = {
        "job": str(job.id),
        # Where the rendered log ends (the job row was read earlier and may be behind):
        # the page follows on from exactly here, so no event is shown twice or skipped.
        "last_seq": log[-1].seq if log else 0,
        "finished": job.is_finished,
        "keys": keys,
        "events_url": reverse("job-events", kwargs={"job_id": str(job.id)}),
        "socket_path": f"/ws/jobs/{job.id}",  # a websocket route: no reverse() for those
    }
    return render(request, "jobs/job_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def job_new_page(request: HttpRequest) -> HttpResponse:
    """/app/jobs/new: requirements and a plan (JSON), with example plans to start from.

    The form carries an idempotency key made when it was shown, so a double submit (or a
    reload that re-posts) makes one job, not two.
    """
    from jobs.views import JobListView  # the API's own input rules, so both agree

    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = {
            "requirements": request.POST.get("requirements", ""),
            "plan": request.POST.get("plan", ""),
            "priority": request.POST.get("priority", "0").strip() or "0",
            "form_key": request.POST.get("form_key", "")[:64],
            "review_plan": request.POST.get("review_plan") == "on",
        }
        body: dict = {"requirements": form["requirements"], "review_plan": form["review_plan"]}
        try:
            body["priority"] = int(form["priority"])
        except ValueError:
            errors["priority"] = ["must be a whole number"]
        if form["plan"].strip():
            try:
                body["plan"] = json_loads(form["plan"], root="plan")
            except JSONPolicyError as exc:
                errors["plan"] = [f"{exc.path}: {exc.message}"]
            except json.JSONDecodeError as exc:
                errors["plan"] = [f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]
        if not errors:
            data = JobListView.InputSerializer(data=body)
            if data.is_valid():
                try:
                    job = _submit_from_form(request.user, dict(data.validated_data), form["form_key"])
                except ApplicationError as exc:
                    errors = exc.fields or {"form": [exc.message]}
                else:
                    return redirect("app-job", job_id=str(job.id))
            else:
                errors = flatten_errors(data.errors)
    else:
        example = EXAMPLE_PLANS.get(request.GET.get("example", ""), EXAMPLE_PLANS["diamond"])
        form = {
            "requirements": example["requirements"],
            "plan": _pretty(example["plan"]),
            "priority": "0",
            "form_key": uuid.uuid4().hex,
            "review_plan": False,
        }
    status = 400 if errors else 200
    return render(
        request,
        "jobs/job_new.html",
        {
            "form": form,
            "errors": errors,
            "plan_errors": sorted((k, v) for k, v in errors.items() if k == "plan" or k.startswith("plan.")),
            "other_errors": sorted(
                (k, v)
                for k, v in errors.items()
                if k not in ("requirements", "priority", "review_plan") and not k.startswith("plan")
            ),
            "examples": {name: {**e, "plan": _pretty(e["plan"])} for name, e in EXAMPLE_PLANS.items()},
            "max_requirements": settings.AGENTBUS_MAX_REQUIREMENTS_CHARS,
            "agents": [a for a in agents_all() if a.kind != "planner"],
            "planner_configured": bool(settings.AGENTBUS_LLM_BASE_URL),
        },
        status=status,
    )


def _submit_from_form(user, spec: dict, form_key: str):
    """Submit once per shown form: the same body posted twice is the same job. A form
    posted again with a changed body (back button, edit, submit) is a new job."""
    try:
        job, _ = job_submit(owner=user, spec=spec, idempotency_key=f"form-{form_key}" if form_key else None)
    except ApplicationError as exc:
        if exc.code != "idempotency_key_reused":
            raise
        job, _ = job_submit(owner=user, spec=spec, idempotency_key=f"form-{uuid.uuid4().hex}")
    return job


@login_required
@require_POST
def job_cancel_page(request: HttpRequest, job_id) -> HttpResponse:
    job = job_get(user=request.user, job_id=job_id)
    try:
        job_cancel(job=job)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Job cancelled; running tasks are being stopped.")
    return redirect("app-job", job_id=str(job.id))


@login_required
@require_POST
def job_retry_page(request: HttpRequest, job_id) -> HttpResponse:
    job = job_get(user=request.user, job_id=job_id)
    try:
        job_retry_failed(job=job)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Retrying the failed tasks; the tasks that succeeded are kept.")
    return redirect("app-job", job_id=str(job.id))


def _job_title(job) -> str:
    first_line = (job.requirements or "").strip().splitlines()[:1]
    return first_line[0][:120] if first_line else f"Job {str(job.id)[:8]}"


def _pretty(value) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= 50_000 else text[:50_000] + "\n… (truncated; the API has it all)"


def _query_without(request: HttpRequest, *names: str) -> str:
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()


def job_purged_page(request: HttpRequest, job) -> HttpResponse:
    """A purged job (retention): 410, with what was kept."""
    tasks = Task.objects.filter(job=job).order_by("created_at", "key")
    return render(request, "retention/job_purged.html", {"job": job, "tasks": tasks}, status=410)
