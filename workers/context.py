"""What an agent gets to work with: its input, upstream outputs, the job, and a way to
report progress. Further capabilities (memory, artifacts, asking a human) hang off the
same object."""

from __future__ import annotations

from typing import Any

from jobs.models import Task
from workers.services import task_progress


class AgentContext:
    def __init__(self, *, task: Task, upstream: dict[str, Any]) -> None:
        self._task = task
        self.input: dict = task.input
        self.upstream: dict[str, Any] = upstream
        self.attempt: int = task.attempt
        self.max_attempts: int = task.max_attempts
        self.task_id = str(task.id)
        self.task_key: str = task.key
        self.job_id = str(task.job_id)
        self.requirements: str = task.job.requirements
        self.metadata: dict = task.job.metadata

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the task is (0.0 to 1.0); pushed live to the job's watchers."""
        task_progress(task=self._task, fraction=fraction, message=message)

    def __repr__(self) -> str:
        return f"<AgentContext {self.task_key} attempt {self.attempt}>"
