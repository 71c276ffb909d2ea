"""The task graph of a job, laid out by DAG depth: nodes with their place and status,
edges with their state. Pure data; ``templates/jobs/job/_graph.svg.html`` draws it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from jobs.dashboard.lookups import Subscriptable
from jobs.models import Job, Task, TaskStatus

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 168, 54, 68, 18, 14
NEVER_SUCCEEDS = (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class GraphNode(Subscriptable):
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
        return _shorten(self.key, 20)

    @property
    def agent_label(self) -> str:
        return _shorten(self.agent, 12)

    @property
    def status_label(self) -> str:
        return self.status.replace("_", " ")

    @property
    def title(self) -> str:
        """The tooltip: the whole key, the agent and the status."""
        return f"{self.key} ({self.agent}): {self.status_label}"

    @property
    def cx(self) -> int:
        return self.x + NODE_W // 2


@dataclass
class GraphEdge(Subscriptable):
    source: GraphNode
    target: GraphNode

    @property
    def path(self) -> str:
        """The SVG path: a horizontal S-curve from the source's right edge to just short
        of the target's left edge (the arrowhead fills the gap)."""
        x1, y1 = self.source.x + NODE_W, self.source.y + NODE_H // 2
        x2, y2 = self.target.x - 6, self.target.y + NODE_H // 2
        mid = (x1 + x2) // 2
        return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"

    @property
    def state(self) -> str:
        """An edge is ready once its source succeeded and blocked once it never will;
        static/agentbus/job.js says the same when it patches an edge live."""
        if self.source.status == TaskStatus.SUCCEEDED:
            return "ready"
        if self.source.status in NEVER_SUCCEEDS:
            return "blocked"
        return ""


@dataclass
class Graph(Subscriptable):
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
