"""What an agent gets to work with: its input, upstream outputs, the job, and a way to
report progress. Further capabilities (memory, artifacts, asking a human) hang off the
same object."""

from __future__ import annotations

from typing import Any

from jobs.models import Task
from workers.services import task_progress


class HumanInputRequired(Exception):
    """Raised by ``ctx.ask_human`` to suspend the attempt until a human answers; the
    entry point (workers.tasks) turns it into a question review and frees the worker."""

    def __init__(self, question: str, options: list[str] | None = None) -> None:
        super().__init__(question)
        self.question = question
        self.options = options


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
        # What reviewers said to this task so far: "answer", "feedback", ... (jobs.reviews).
        from jobs.reviews import task_human_context

        self.human: dict = task_human_context(task=task)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the task is (0.0 to 1.0); pushed live to the job's watchers."""
        task_progress(task=self._task, fraction=fraction, message=message)

    def ask_human(self, question: str, options: list[str] | None = None):
        """Ask a human and return the answer. The first time, this suspends the task (it
        becomes ``awaiting_input`` and frees its worker); once someone answers, the agent
        runs again from the start and this call returns the answer. Code before the call
        therefore runs again: keep it cheap or idempotent."""
        from jobs.reviews import question_validate

        question, options = question_validate(question, options)
        for asked in reversed(self.human.get("answers", [])):
            if asked["question"] == question:
                return asked["answer"]
        raise HumanInputRequired(question, options)

    def __repr__(self) -> str:
        return f"<AgentContext {self.task_key} attempt {self.attempt}>"
