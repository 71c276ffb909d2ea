"""The job page's event log: one line per event, oldest first, for
``templates/jobs/job_detail.html``. static/agentbus/job.js appends live events alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobs.dashboard.lookups import Subscriptable
from jobs.models import Job, TaskStatus


@dataclass(frozen=True)
class EventLine(Subscriptable):
    seq: int
    type: str
    text: str
    at: datetime

    @property
    def clock(self) -> str:
        """The time of day to the millisecond, as the page's script shows live events."""
        return self.at.strftime("%H:%M:%S.%f")[:12]


def job_event_log(job: Job, *, keys: dict[str, str], size: int) -> list[EventLine]:
    """The job's last ``size`` events as lines, oldest first; ``keys`` names tasks by id.

    Read as rows rather than JobEvent instances (the page shows 300 of them), each made
    into the fields of ``JobEvent.as_message()`` that ``event_describe`` reads.
    """
    rows = job.events.order_by("-seq").values_list("seq", "type", "task_id", "status", "data", "at")[:size]
    lines = []
    for seq, kind, task_id, status, data, at in reversed(list(rows)):
        message: dict = {"type": kind}
        if task_id:
            message["task"] = str(task_id)
        if status:
            message["status"] = status
        message.update(data)
        lines.append(EventLine(seq, kind, event_describe(message, keys), at))
    return lines


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
