"""Reads for the dashboard pages, shaped for templates: the job list with its task
progress, the task graph laid out by DAG depth, and each task's timeline and attempts
rebuilt from the event log.

Everything here only reads; what a user may see is decided by ``jobs.selectors``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from jobs.models import TASK_TERMINAL, Job, JobEvent, Task, TaskStatus
from jobs.selectors import job_list, jobs_visible_to

# --- the job list -----------------------------------------------------------------------


def dashboard_jobs(*, user, status: str | None = None, q: str = "", owner: str = "") -> QuerySet[Job]:
    """The caller's jobs (everyone's for staff), newest first, filtered by status, by a
    search over requirements and id prefix, and (staff) by owner's username."""
    jobs = job_list(user=user, status=status)
    q = q.strip()
    if q:
        match = Q(requirements__icontains=q)
        compact = q.replace("-", "").lower()
        if 1 <= len(compact) <= 32 and all(c in "0123456789abcdef" for c in compact):
            match |= Q(id__startswith=compact) if len(compact) < 32 else Q(id=uuid.UUID(compact))
        jobs = jobs.filter(match)
    if owner and user.is_staff:
        jobs = jobs.filter(owner__username=owner)
    return jobs


def job_status_counts(*, user) -> dict[str, int]:
    rows = jobs_visible_to(user).order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


@dataclass
class TaskProgress:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    active: int = 0
    other_done: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.other_done

    def pct(self, n: int) -> float:
        return round(100 * n / self.total, 1) if self.total else 0.0

    @property
    def succeeded_pct(self) -> float:
        return self.pct(self.succeeded)

    @property
    def failed_pct(self) -> float:
        return self.pct(self.failed)

    @property
    def active_pct(self) -> float:
        return self.pct(self.active)

    @property
    def other_pct(self) -> float:
        return self.pct(self.other_done)


def jobs_progress(jobs: list[Job]) -> dict:
    """Task counts by outcome for one page of jobs: one grouped query, however many jobs.

    A job not planned yet has no Task rows; its total comes from the submitted plan.
    """
    progress = {job.id: TaskProgress() for job in jobs}
    rows = Task.objects.filter(job_id__in=list(progress)).order_by().values("job_id", "status").annotate(n=Count("id"))
    for row in rows:
        p = progress[row["job_id"]]
        p.total += row["n"]
        if row["status"] == TaskStatus.SUCCEEDED:
            p.succeeded += row["n"]
        elif row["status"] == TaskStatus.FAILED:
            p.failed += row["n"]
        elif row["status"] in TASK_TERMINAL:
            p.other_done += row["n"]
        elif row["status"] in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            p.active += row["n"]
    for job in jobs:
        if progress[job.id].total == 0 and isinstance(job.plan, dict):
            progress[job.id].total = len(job.plan.get("tasks") or [])
    return progress


# --- the task graph ---------------------------------------------------------------------

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 168, 54, 68, 18, 14
NEVER_SUCCEEDS = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)


@dataclass
class GraphNode:
    key: str
    agent: str
    status: str
    task_id: str = ""
    depth: int = 0
    row: int = 0
    x: int = 0
    y: int = 0

    @property
    def label(self) -> str:
        return self.key if len(self.key) <= 20 else self.key[:19] + "…"

    @property
    def cx(self) -> int:
        return self.x + NODE_W // 2


@dataclass
class GraphEdge:
    source: GraphNode
    target: GraphNode

    @property
    def path(self) -> str:
        x1, y1 = self.source.x + NODE_W, self.source.y + NODE_H // 2
        x2, y2 = self.target.x - 6, self.target.y + NODE_H // 2
        mid = (x1 + x2) // 2
        return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"

    @property
    def state(self) -> str:
        if self.source.status == TaskStatus.SUCCEEDED:
            return "ready"
        if self.source.status in NEVER_SUCCEEDS:
            return "blocked"
        return ""


@dataclass
class Graph:
    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    width: int = 0
    height: int = 0
    node_w: int = NODE_W
    node_h: int = NODE_H


def graph_nodes(job: Job, tasks: list[Task]) -> tuple[list[GraphNode], dict[str, list[str]]]:
    """The graph's nodes and dependencies: from the Task rows, or from the submitted plan
    while the orchestrator has not written them yet."""
    if tasks:
        nodes = [GraphNode(t.key, t.agent, t.status, str(t.id)) for t in tasks]
        deps = {t.key: list(t.depends_on) for t in tasks}
    else:
        specs = (job.plan or {}).get("tasks") or []
        nodes = [GraphNode(s["key"], s.get("agent", ""), TaskStatus.PENDING) for s in specs]
        deps = {s["key"]: list(s.get("depends_on") or []) for s in specs}
    return nodes, deps


def graph_layout(nodes: list[GraphNode], deps: dict[str, list[str]]) -> Graph:
    """Lay a DAG out left to right, one column per depth.

    1. A node's depth is the length of the longest dependency chain above it (Kahn's
       order, so each node is placed after all its parents).
    2. Columns keep the plan's order at depth 0; deeper columns order their nodes by
       the mean row of their parents, which keeps most edges short and uncrossed.
    3. Columns are centred vertically against the tallest one.
    """
    by_key = {n.key: n for n in nodes}
    children: dict[str, list[str]] = defaultdict(list)
    indegree = {n.key: 0 for n in nodes}
    for key, parents in deps.items():
        for parent in parents:
            if parent in by_key and key in by_key:
                children[parent].append(key)
                indegree[key] += 1
    ready = [n.key for n in nodes if indegree[n.key] == 0]
    order: list[str] = []
    while ready:
        key = ready.pop(0)
        order.append(key)
        for child in children[key]:
            by_key[child].depth = max(by_key[child].depth, by_key[key].depth + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)

    columns: dict[int, list[GraphNode]] = defaultdict(list)
    for key in order:
        columns[by_key[key].depth].append(by_key[key])
    for depth in sorted(columns):
        column = columns[depth]
        if depth:
            position = {id(n): i for i, n in enumerate(column)}
            column.sort(
                key=lambda n: (
                    sum(by_key[p].row for p in deps[n.key] if p in by_key) / max(1, len(deps[n.key])),
                    position[id(n)],
                )
            )
        for row, node in enumerate(column):
            node.row = row

    tallest = max((len(c) for c in columns.values()), default=0)
    height = PAD * 2 + tallest * NODE_H + max(0, tallest - 1) * ROW_GAP
    for depth, column in columns.items():
        column_height = len(column) * NODE_H + (len(column) - 1) * ROW_GAP
        top = (height - column_height) // 2
        for node in column:
            node.x = PAD + depth * (NODE_W + COL_GAP)
            node.y = top + node.row * (NODE_H + ROW_GAP)
    width = PAD * 2 + len(columns) * NODE_W + max(0, len(columns) - 1) * COL_GAP
    edges = [
        GraphEdge(by_key[parent], by_key[key])
        for key, parents in deps.items()
        for parent in parents
        if parent in by_key and key in by_key
    ]
    return Graph(nodes=[by_key[k] for k in order], edges=edges, width=width, height=height)


def job_graph(job: Job, tasks: list[Task]) -> Graph:
    return graph_layout(*graph_nodes(job, tasks))


# --- timelines and attempts, from the event log ------------------------------------------

# What a task is doing while in each status, as drawn on its timeline.
SEGMENT_KIND = {
    TaskStatus.PENDING: "blocked",
    TaskStatus.QUEUED: "queued",
    TaskStatus.RUNNING: "running",
    TaskStatus.AWAITING_REVIEW: "review",
    TaskStatus.AWAITING_INPUT: "review",
}
SEGMENT_TITLE = {
    "blocked": "waiting for dependencies",
    "queued": "waiting in the queue",
    "running": "running",
    "backoff": "waiting to retry",
    "review": "waiting for a human",
}


@dataclass
class Segment:
    kind: str
    start: datetime
    end: datetime
    open: bool = False
    end_status: str = ""
    left: float = 0.0
    width: float = 0.0

    @property
    def seconds(self) -> float:
        return round((self.end - self.start).total_seconds(), 2)

    @property
    def title(self) -> str:
        return f"{SEGMENT_TITLE.get(self.kind, self.kind)}: {self.seconds:g}s"


@dataclass
class TaskView:
    task: Task
    segments: list[Segment] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    reviews: list = field(default_factory=list)
    summary_html: str = ""


@dataclass
class Timeline:
    rows: list[TaskView]
    start: datetime
    seconds: float


def job_status_events(job: Job) -> list[JobEvent]:
    """The task state changes of a job (not its progress reports), oldest first."""
    return list(
        JobEvent.objects.filter(job=job, type__in=("task.status", "task.retry"))
        .order_by("seq")
        .only("seq", "type", "task_id", "status", "data", "at")
    )


def job_timeline(job: Job, tasks: list[Task], events: list[JobEvent], *, now: datetime | None = None) -> Timeline:
    """Each task's life as segments (blocked, queued, running, backoff, review), placed
    on one time axis from the job's submission to its end (or now), and its attempts."""
    now = now or timezone.now()
    by_task: dict = defaultdict(list)
    for event in events:
        if event.task_id:
            by_task[event.task_id].append(event)

    start = job.created_at
    end = job.finished_at or now
    total = max((end - start).total_seconds(), 0.001)
    rows = []
    for task in tasks:
        view = TaskView(task)
        state, kind, since = TaskStatus.PENDING, "blocked", task.created_at
        for event in by_task[task.id]:
            view.segments.append(Segment(kind, since, event.at, end_status=event.status))
            view.attempts.extend(_attempt_lines(event))
            state, since = event.status, event.at
            kind = "backoff" if event.type == "task.retry" else SEGMENT_KIND.get(state, "")
        if state not in TASK_TERMINAL and kind:
            view.segments.append(Segment(kind, since, end, open=job.finished_at is None))
        view.segments = [s for s in view.segments if s.kind and s.end > s.start]
        for s in view.segments:
            s.left = round(100 * (s.start - start).total_seconds() / total, 2)
            s.width = round(100 * (s.end - s.start).total_seconds() / total, 2)
        rows.append(view)
    return Timeline(rows=rows, start=start, seconds=round(total, 2))


def _attempt_lines(event: JobEvent) -> list[str]:
    data = event.data or {}
    attempt = data.get("attempt")
    label = f"attempt {attempt}" if attempt else "task"
    if event.type == "task.retry":
        return [f"{label} failed: {data.get('error', '')} (retry in {data.get('retry_in', '?')}s)"]
    if event.status == TaskStatus.RUNNING:
        worker = data.get("worker")
        return [f"{label} started" + (f" on {worker}" if worker else "")]
    if event.status == TaskStatus.SUCCEEDED:
        return [f"{label} succeeded"]
    if event.status == TaskStatus.FAILED:
        return [f"{label} failed for good: {data.get('error', '')}"]
    if event.status == TaskStatus.PENDING and data.get("retried_from"):
        return [f"retried by the user (was {data['retried_from']})"]
    if event.status in (TaskStatus.CANCELLED, TaskStatus.SKIPPED):
        return [f"{event.status}" + (f": {data['error']}" if data.get("error") else "")]
    return []


def event_describe(message: dict, keys: dict[str, str]) -> str:
    """One line for the event log; static/agentbus/job.js says the same for live events."""
    key = message.get("key") or keys.get(message.get("task", ""), "")
    status = message.get("status", "")
    kind = message.get("type", "")
    if kind == "job.status":
        text = f"job {status}"
        if message.get("error"):
            text += f": {message['error']}"
        return text
    if kind == "task.progress":
        pct = message.get("progress")
        pct_text = f" {round(pct * 100)}%" if isinstance(pct, (int, float)) else ""
        return f"{key} progress{pct_text} {message.get('message', '')}".strip()
    if kind == "task.retry":
        return f"{key} attempt {message.get('attempt')} failed, retry in {message.get('retry_in')}s: {message.get('error', '')}"
    text = f"{key} {status}".strip()
    if message.get("attempt") and status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
        text += f" (attempt {message['attempt']})"
    if message.get("error") and status in (TaskStatus.FAILED, TaskStatus.SKIPPED):
        text += f": {message['error']}"
    return text


# --- what hangs off a job's tasks: artifacts and review gates ----------------------------


def job_artifacts_by_task(job: Job) -> dict:
    """The files each task wrote, with the API's download path; one query."""
    from jobs.artifact_views import artifact_download_path
    from jobs.models import Artifact

    by_task: dict = defaultdict(list)
    for artifact in Artifact.objects.filter(job=job).only("id", "job_id", "task_id", "name", "size", "content_type"):
        artifact.download_path = artifact_download_path(artifact)
        by_task[artifact.task_id].append(artifact)
    return by_task


def job_reviews_by_task(job: Job) -> dict:
    """The job's review gates, newest first, keyed by task id (None: the plan review)."""
    from jobs.models import Review

    by_task: dict = defaultdict(list)
    reviews = Review.objects.filter(job=job).select_related("decided_by").order_by("-created_at")
    for review in reviews:
        by_task[review.task_id].append(review)
    return by_task


# --- the system strip staff see on the dashboard ------------------------------------------


def system_summary() -> dict | None:
    """Orchestrator and worker heartbeats and queue depths (GET /system, condensed);
    None when Redis cannot be read, so the dashboard still renders."""
    from redis.exceptions import RedisError

    from agentbus_site.system import system_status

    try:
        status = system_status()
    except (RedisError, OSError):
        return None
    leader = next((o for o in status["orchestrators"]["instances"] if o["role"] == "leader"), None)
    return {
        "leader": leader,
        "standbys": sum(1 for o in status["orchestrators"]["instances"] if o["role"] != "leader"),
        "workers": status["workers"],
        "queues": sorted(status["queues"].items()),
    }


# --- rendering the big repeated parts -------------------------------------------------------
# The graph and the timeline repeat one small fragment per task; built here with
# format_html they render ~10x faster than the same markup through template tags, which
# matters because every open job page redraws them after each event.


def _label(status: str) -> str:
    return status.replace("_", " ")


def graph_svg(graph: Graph) -> str:
    """The task graph as inline SVG: edges under nodes, each node linking to its task."""
    from django.utils.html import format_html, format_html_join
    from django.utils.safestring import mark_safe

    edges = format_html_join(
        "\n",
        '<path class="edge {}" d="{}" marker-end="url(#arrow)" data-from="{}" data-to="{}"/>',
        ((e.state, e.path, e.source.key, e.target.key) for e in graph.edges),
    )
    nodes = format_html_join(
        "\n",
        '<g class="node st-{}" data-key="{}" data-task-id="{}" data-status="{}" transform="translate({},{})">'
        '<a href="#task-{}"><title>{} ({}): {}</title>'
        f'<rect width="{NODE_W}" height="{NODE_H}" rx="10"/><circle class="dot" cx="16" cy="19" r="4.5"/>'
        '<text class="key" x="28" y="23">{}</text>'
        '<text class="sub" x="14" y="42">{} · <tspan class="node-status">{}</tspan></text></a></g>',
        (
            (
                n.status,
                n.key,
                n.task_id,
                n.status,
                n.x,
                n.y,
                n.key,
                n.key,
                n.agent,
                _label(n.status),
                n.label,
                n.agent if len(n.agent) <= 12 else n.agent[:11] + "…",
                _label(n.status),
            )
            for n in graph.nodes
        ),
    )
    if not graph.nodes:
        return mark_safe("")
    return format_html(
        '<svg class="graph" id="task-graph" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Task graph" '
        'viewBox="0 0 {} {}" width="{}" height="{}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path class="arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>\n{}\n{}</svg>',
        graph.width,
        graph.height,
        graph.width,
        graph.height,
        edges,
        nodes,
    )


def timeline_rows_html(timeline: Timeline) -> str:
    """One label and one track of segments per task."""
    from django.utils.html import format_html_join

    def track(row: TaskView) -> str:
        return format_html_join(
            "",
            '<span class="seg {}{}{}" style="left:{}%;width:{}%" title="{}"></span>',
            (
                (
                    s.kind,
                    f" end-{s.end_status}" if s.kind == "running" and s.end_status else "",
                    " open" if s.open else "",
                    s.left,
                    s.width,
                    s.title,
                )
                for s in row.segments
            ),
        )

    return format_html_join(
        "\n",
        '<div class="tl-key" title="{}">{}</div><div class="tl-track" data-key="{}">{}</div>',
        ((row.task.key, row.task.key, row.task.key, track(row)) for row in timeline.rows),
    )


def task_summary_html(row: TaskView) -> str:
    """The always-visible line of a task in the task list (its details sit below it)."""
    from django.utils.html import format_html

    task = row.task
    progress = ""
    if task.progress is not None and task.status == TaskStatus.RUNNING:
        progress = format_html(
            '<span class="small muted">{}% {}</span>', round(task.progress * 100), task.progress_message
        )
    review = ""
    if row.reviews and row.reviews[0].status == "pending":
        review = format_html('<a class="btn btn-small" href="/app/reviews/{}">Review</a>', row.reviews[0].id)
    files = ""
    if row.artifacts:
        n = len(row.artifacts)
        files = format_html('<span class="small muted">{} file{}</span>', n, "" if n == 1 else "s")
    took = "—"
    if task.started_at and task.finished_at:
        from jobs.templatetags.dashboard import seconds

        took = seconds((task.finished_at - task.started_at).total_seconds())
    return format_html(
        '<span class="key">{}</span> <span class="badge st-{}">{}</span> {}{}{}'
        '<span class="meta"><span>{}</span><span>attempt {}/{}</span><span>{}</span></span>',
        task.key, task.status, _label(task.status), progress, review, files,
        task.agent, task.attempt, task.max_attempts, took,
    )  # fmt: skip


def event_log_html(events: list[JobEvent], keys: dict[str, str]) -> str:
    """The event log's lines, oldest first; static/agentbus/job.js appends live ones alike."""
    from django.utils.html import format_html_join

    return format_html_join(
        "\n",
        '<li data-seq="{}"><span class="seq">#{}</span><span class="what">{}<br>'
        '<span class="when">{} · {}</span></span></li>',
        (
            (e.seq, e.seq, event_describe(e.as_message(), keys), e.at.strftime("%H:%M:%S.%f")[:12], e.type)
            for e in events
        ),
    )
