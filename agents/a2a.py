"""Remote A2A agents as agents: a task of kind ``a2a`` delegates to an agent that staff
registered by its card URL (the official ``a2a-sdk`` client, A2A 1.0).

1. Read the card at the registered URL; the agent's endpoint must be on the card's own
   origin, so a card cannot send a worker elsewhere (user input never chooses either).
2. Send the task's input as a message (a data part, plus a text part for
   ``input.text``), the job's id as the context and the task's attempt as the message
   id, and follow the remote task: streaming when the card offers it, else polling.
3. The remote task's end is the task's: completed gives ``{"artifacts": {name: data
   or text}, "remote_task", "state"}`` as output; failed, rejected, cancelled or
   auth-required fail the task with the remote status message, without retry.
4. Input-required becomes an agentbus question (``ctx.ask_human``): the task suspends
   without holding a worker; once a human answers, the task runs again and sends the
   answer to the same remote task (named in the question), then follows it again.
An agent that cannot be reached, or fails at the HTTP level, is retried with backoff
and counts against its circuit breaker.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from agents.breakers import breaker_for
from agents.registry import AgentSpec, NonRetryableError

POLL_INTERVAL = 0.3
# Questions carry the remote task they came from, so the answer goes back to it.
REMOTE_TASK_MARK = re.compile(r"\[a2a task (?P<id>[^\]\s]+)\]$")


class A2aAgentError(Exception):
    """The remote agent could not be reached or failed (another attempt may work)."""


@dataclass
class Outcome:
    output: Any = None
    question: str | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)


def a2a_agent_run(spec: AgentSpec, ctx) -> Any:
    answer = _pending_answer(ctx)
    outcome = breaker_for(spec).call(lambda: asyncio.run(_delegate(spec, ctx, answer)))
    if outcome.question is not None:
        # Suspends the task until a human answers (outside the breaker: a question is
        # not the endpoint's failure).
        ctx.ask_human(outcome.question)
        raise NonRetryableError(f"the remote agent asked again a question already answered: {outcome.question!r}")
    return outcome.output


def _pending_answer(ctx) -> tuple[str, Any] | None:
    """The remote task and answer of the last question this task's agent asked."""
    answers = (getattr(ctx, "human", None) or {}).get("answers") or []
    if not answers:
        return None
    match = REMOTE_TASK_MARK.search(str(answers[-1].get("question", "")))
    return (match["id"], answers[-1].get("answer")) if match else None


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _delegate(spec: AgentSpec, ctx, answer: tuple[str, Any] | None) -> Outcome:
    from a2a.utils.errors import A2AError

    from agents.protocols import auth_header_split

    headers = {"User-Agent": "agentbus-worker", **auth_header_split(spec.auth_header)}
    try:
        async with httpx.AsyncClient(headers=headers, timeout=spec.timeout, follow_redirects=False) as http:
            return await asyncio.wait_for(_follow(spec, ctx, http, answer), spec.timeout)
    except (NonRetryableError, A2aAgentError):
        raise
    except Exception as raised:
        exc = _leaf(raised)
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            raise A2aAgentError(f"no answer from A2A agent '{spec.name}' within {spec.timeout}s") from None
        if isinstance(exc, httpx.HTTPStatusError):
            status = exc.response.status_code
            if status >= 500 or status in (408, 429):
                raise A2aAgentError(f"A2A agent '{spec.name}' answered HTTP {status}") from None
            raise NonRetryableError(f"A2A agent '{spec.name}' answered HTTP {status}") from None
        if isinstance(exc, httpx.HTTPError | OSError):
            raise A2aAgentError(f"cannot reach A2A agent '{spec.name}': {exc}") from None
        if isinstance(exc, A2AError):
            status = getattr(exc, "status_code", None)
            if status is not None and (status >= 500 or status in (408, 429)):
                raise A2aAgentError(f"A2A agent '{spec.name}': {exc}") from None
            if type(exc).__name__ in ("A2AClientError", "A2AClientTimeoutError", "AgentCardResolutionError"):
                raise A2aAgentError(f"A2A agent '{spec.name}': {exc}") from None
            raise NonRetryableError(f"A2A agent '{spec.name}' refused the task: {exc}") from None
        raise


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def _follow(spec: AgentSpec, ctx, http: httpx.AsyncClient, answer: tuple[str, Any] | None) -> Outcome:
    from a2a.client import A2ACardResolver, ClientConfig, create_client
    from a2a.helpers import new_data_part, new_text_part
    from a2a.types import a2a_pb2 as pb

    card_url = urlsplit(spec.url)
    card = await A2ACardResolver(http, f"{card_url.scheme}://{card_url.netloc}", card_url.path or "/").get_agent_card()
    for interface in card.supported_interfaces:
        if _origin(interface.url) != _origin(spec.url):
            raise NonRetryableError(
                f"A2A agent '{spec.name}': its card names an endpoint off the card's origin ({interface.url})"
            )
    client = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=True))
    if answer is not None:
        remote_id, value = answer
        parts = [new_text_part(value if isinstance(value, str) else str(value))]
        message_id = f"agentbus-{ctx.task_id}-{ctx.attempt}-answer-{len(ctx.human.get('answers', []))}"
    else:
        remote_id = ""
        task_input = ctx.input or {}
        parts = [new_data_part(task_input)]
        if isinstance(task_input.get("text"), str):
            parts.insert(0, new_text_part(task_input["text"]))
        message_id = f"agentbus-{ctx.task_id}-{ctx.attempt}"
    request = pb.SendMessageRequest(
        message=pb.Message(
            message_id=message_id, role=pb.ROLE_USER, parts=parts, context_id=ctx.job_id, task_id=remote_id
        )
    )
    task: pb.Task | None = None
    artifacts: dict[str, pb.Artifact] = {}
    async for event in client.send_message(request):
        if event.HasField("message"):  # a direct reply, without a task
            return Outcome(output={"message": _parts_value(event.message.parts), "state": "completed"})
        if event.HasField("task"):
            task = event.task
            for artifact in task.artifacts:
                artifacts[artifact.artifact_id] = artifact
        elif event.HasField("status_update"):
            # A reply on an existing task may stream updates without the task first.
            task = task or pb.Task(id=event.status_update.task_id, context_id=event.status_update.context_id)
            task.status.CopyFrom(event.status_update.status)
        elif event.HasField("artifact_update"):
            task = task or pb.Task(id=event.artifact_update.task_id, context_id=event.artifact_update.context_id)
            update = event.artifact_update.artifact
            if event.artifact_update.append and update.artifact_id in artifacts:
                artifacts[update.artifact_id].parts.extend(update.parts)
            else:
                artifacts[update.artifact_id] = update
    if task is None:
        raise NonRetryableError(f"A2A agent '{spec.name}' answered without a task")
    settled = (pb.TASK_STATE_COMPLETED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELED, pb.TASK_STATE_REJECTED)
    waiting = (pb.TASK_STATE_INPUT_REQUIRED, pb.TASK_STATE_AUTH_REQUIRED)
    while task.status.state not in settled + waiting:  # the stream ended early, or no streaming: poll
        await asyncio.sleep(POLL_INTERVAL)
        task = await client.get_task(pb.GetTaskRequest(id=task.id))
        for artifact in task.artifacts:
            artifacts[artifact.artifact_id] = artifact
    said = _parts_text(task.status.message.parts) if task.status.HasField("message") else ""
    state = pb.TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()
    if task.status.state == pb.TASK_STATE_INPUT_REQUIRED:
        return Outcome(question=f"{said or 'The remote agent needs input.'} [a2a task {task.id}]")
    if task.status.state != pb.TASK_STATE_COMPLETED:
        raise NonRetryableError(f"A2A agent '{spec.name}': remote task {task.id} {state}: {said or 'no message'}")
    named = {artifact.name or artifact.artifact_id: _parts_value(artifact.parts) for artifact in artifacts.values()}
    return Outcome(output={"artifacts": named, "remote_task": task.id, "state": state})


def _parts_text(parts) -> str:
    return "\n".join(part.text for part in parts if part.HasField("text"))


def _parts_value(parts) -> Any:
    """One part as its data or text; several as a list."""
    from google.protobuf.json_format import MessageToDict

    values = []
    for part in parts:
        if part.HasField("data"):
            values.append(_whole(MessageToDict(part.data)))
        elif part.HasField("text"):
            values.append(part.text)
        elif part.HasField("url"):
            values.append({"url": part.url, "media_type": part.media_type})
    return values[0] if len(values) == 1 else values


def _whole(value: Any) -> Any:
    """A protobuf Value keeps every number as a double; whole ones back to int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value
