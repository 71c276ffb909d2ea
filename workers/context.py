"""What an agent gets to work with: its input, upstream outputs, the job, and a way to
report progress. Further capabilities (memory, artifacts, asking a human, streaming what
it says while it says it) hang off the same object."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from core.streams import AttemptStream
from jobs.lifecycle import task_progress, task_usage_record
from jobs.models import Task
from jobs.reviews.context import task_human_context
from jobs.reviews.gates import question_validate

logger = logging.getLogger(__name__)


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
        self.job = task.job
        # Follow-up tasks this attempt adds to the job (ctx.spawn), written with its output.
        self.spawned: list[dict] = []
        # What reviewers said to this task so far: "answer", "feedback", ... (jobs.reviews).
        self.human: dict = task_human_context(task=task)
        # What this attempt says while it runs (core.streams); opened by its first chunk.
        self.stream_of_attempt = AttemptStream(
            job_id=self.job_id, task_id=self.task_id, key=task.key, attempt=task.attempt, timeout=task.timeout
        )

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the task is (0.0 to 1.0); pushed live to the job's watchers."""
        task_progress(task=self._task, fraction=fraction, message=message)

    def stream(self, text: str) -> None:
        """Send a piece of the task's text to its watchers now (``task.delta`` on the job's
        websocket and ``GET /jobs/{id}/stream``). The output is still what the agent
        returns; the stream is for watching it being written."""
        try:
            self.stream_of_attempt.delta(text)
        except RedisError:
            # Watching is best effort (Redis may be lost); the output is committed anyway.
            logger.warning("task %s attempt %s: a stream chunk was lost", self.task_id, self.attempt, exc_info=True)

    def emit(self, kind: str, data=None) -> None:
        """Send a custom chunk (``task.emit`` with ``kind`` and JSON ``data``: a tool call,
        a step's name, ...) to the job's watchers, in order with the text."""
        try:
            self.stream_of_attempt.emit(kind, data)
        except RedisError:
            logger.warning("task %s attempt %s: a stream chunk was lost", self.task_id, self.attempt, exc_info=True)

    def ask_human(self, question: str, options: list[str] | None = None):
        """Ask a human and return the answer. The first time, this suspends the task (it
        becomes ``awaiting_input`` and frees its worker); once someone answers, the agent
        runs again from the start and this call returns the answer. Code before the call
        therefore runs again: keep it cheap or idempotent."""
        question, options = question_validate(question, options)
        for asked in reversed(self.human.get("answers", [])):
            if asked["question"] == question:
                return asked["answer"]
        raise HumanInputRequired(question, options)

    def artifact(self, name: str, data: bytes | str, content_type: str | None = None):
        """Store a file for this task (Django's storage API); listed with a download URL
        in GET /jobs/{id}/results. Writing the same name again replaces it."""
        from workers.services import task_artifact_write

        return task_artifact_write(task=self._task, name=name, data=data, content_type=content_type)

    def spawn(self, task: dict) -> None:
        """Add a follow-up task to the job once this one succeeds: a plan task
        (``{"key", "agent", "input"?, "depends_on"?, ...}``) that also depends on this
        one. Bounded by the job's max_tasks; validated like a submitted plan."""
        self.spawned.append(task)

    def usage_record(self, *, prompt_tokens: int = 0, completion_tokens: int = 0, total_tokens: int = 0) -> int:
        """Count LLM tokens against this task and the job's budget (agents.llm
        does it for every call it makes)."""
        return task_usage_record(
            task=self._task,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens or prompt_tokens + completion_tokens,
        )

    def tokens_remaining(self) -> int | None:
        """LLM tokens the job may still spend; None when it has no token budget."""
        from workers.services import task_tokens_remaining

        return task_tokens_remaining(task=self._task)

    def llm(self, messages: list[dict], *, max_tokens: int | None = None, agent: str | None = None):
        """Chat with the configured LLM (or agent ``agent``'s endpoint) from a Python
        agent, inside that agent's circuit breaker and the job's token budget."""
        from agents.llm import llm_chat
        from agents.registry import AgentSpec, agent_get

        spec = agent_get(agent or self._task.agent) or AgentSpec(name=self._task.agent, kind="python")
        return llm_chat(spec=spec, ctx=self, messages=messages, max_tokens=max_tokens)

    def memory_search(
        self,
        query: str,
        *,
        k: int = 5,
        namespace: str | None = None,
        filters: dict | None = None,
        min_score: float | None = None,
    ) -> list[dict]:
        """Search the job owner's long-term memory (their own, and shared namespaces
        granted to them), best first: ``[{"id", "text", "score", "metadata", "namespace"}]``."""
        from memory.selectors import memory_search

        hits = memory_search(
            user=self._task.job.owner, query=query, k=k, namespace=namespace, filters=filters, min_score=min_score
        )
        return [
            {
                "id": str(hit.memory.id),
                "text": hit.memory.text,
                "score": hit.score,
                "metadata": hit.memory.metadata,
                "namespace": hit.memory.namespace,
            }
            for hit in hits
        ]

    def memory_store(
        self, text: str, *, namespace: str = "default", metadata: dict | None = None, ttl: int | None = None
    ) -> str:
        """Remember ``text`` for the job's owner, with this job and task as provenance in
        its metadata; returns the memory's id."""
        from memory.services import memory_store

        provenance = {"source": "agent", "job": self.job_id, "task": self.task_id, "task_key": self.task_key}
        memory = memory_store(
            owner=self._task.job.owner,
            text=text,
            namespace=namespace,
            metadata={**(metadata or {}), **provenance},
            ttl=ttl,
        )
        return str(memory.id)

    def mcp(self, server: str, tool: str, arguments: dict | None = None):
        """Call a tool of a staff-registered MCP server (an agent of kind ``mcp``) by its
        name, inside that server's circuit breaker; answers the tool's result. A tool
        error raises NonRetryableError with its message; tools the server's
        registration does not allow are refused."""
        from agents.mcp import mcp_call_registered

        return mcp_call_registered(server, tool, arguments or {}, timeout=self._task.timeout)

    def __repr__(self) -> str:
        return f"<AgentContext {self.task_key} attempt {self.attempt}>"
