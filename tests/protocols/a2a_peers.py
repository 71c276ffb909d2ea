"""Helpers for driving agentbus with the official a2a-sdk client."""

from __future__ import annotations

import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.helpers import get_data_parts, new_data_part, new_text_part
from a2a.types import a2a_pb2 as pb


async def a2a_client(base_url: str, token: str | None, *, streaming: bool = True):
    """The card from the well-known path (public), then a client sending the token."""
    async with httpx.AsyncClient() as anonymous:
        card = await A2ACardResolver(anonymous, base_url).get_agent_card()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx.AsyncClient(headers=headers, timeout=60)
    client = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=streaming))
    return card, client, http


def message(*, text: str | None = None, data=None, task_id: str | None = None) -> pb.SendMessageRequest:
    parts = []
    if text is not None:
        parts.append(new_text_part(text))
    if data is not None:
        parts.append(new_data_part(data))
    msg = pb.Message(message_id=str(uuid.uuid4()), role=pb.ROLE_USER, parts=parts, task_id=task_id or "")
    return pb.SendMessageRequest(message=msg)


async def collect(stream) -> list[pb.StreamResponse]:
    return [event async for event in stream]


def states(events: list[pb.StreamResponse]) -> list[str]:
    seen = []
    for event in events:
        if event.HasField("task"):
            seen.append(pb.TaskState.Name(event.task.status.state))
        elif event.HasField("status_update"):
            seen.append(pb.TaskState.Name(event.status_update.status.state))
    return seen


def last_status(events: list[pb.StreamResponse]) -> pb.TaskStatus:
    """The last status streamed: a status update's, or the task's own when the job had
    already reached it before the stream began (then the stream is that one task event)."""
    event = events[-1]
    return event.task.status if event.HasField("task") else event.status_update.status


def artifacts(events: list[pb.StreamResponse]) -> dict[str, object]:
    """Artifacts by name: streamed updates, and those of a task event (a job that was
    already finished when the stream began comes as one task)."""
    found: dict[str, object] = {}
    for event in events:
        listed = event.task.artifacts if event.HasField("task") else []
        if event.HasField("artifact_update"):
            listed = [event.artifact_update.artifact]
        for artifact in listed:
            found[artifact.name] = get_data_parts(artifact.parts)[0]
    return found
