"""A remote A2A agent built with the official `a2a-sdk`, for `a2a` agents to delegate to:
`python -m tests.protocols.peers.a2a_peer PORT`. It answers a message with an artifact
of what it got; a message whose data asks for `"ask": true` first needs input ("Which
size?") and then completes with the size it was told; `"fail": true` fails."""

from __future__ import annotations

import sys

import uvicorn
from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_text_part
from a2a.server.agent_execution.agent_executor import AgentExecutor
from a2a.server.agent_execution.context import RequestContext
from a2a.server.events.event_queue import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks.inmemory_task_store import InMemoryTaskStore
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Task, TaskState, TaskStatus
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette


class PeerExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        updater = TaskUpdater(event_queue=event_queue, task_id=context.task_id, context_id=context.context_id)
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=context.task_id,
                    context_id=context.context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[message],
                )
            )
            data = (get_data_parts(message.parts) or [{}])[0]
            await updater.start_work()
            if data.get("fail"):
                await updater.failed(message=updater.new_agent_message(parts=[new_text_part("the peer gave up")]))
                return
            if data.get("ask"):
                await updater.requires_input(message=updater.new_agent_message(parts=[new_text_part("Which size?")]))
                return
            await updater.add_artifact(parts=[new_data_part({"got": data, "context": context.context_id})], name="echo")
            await updater.complete()
            return
        # A reply to our question: the size.
        size = " ".join(get_text_parts(message.parts)).strip()
        await updater.start_work()
        first = MessageToDict(context.current_task.history[0]) if context.current_task.history else {}
        await updater.add_artifact(parts=[new_data_part({"size": size, "asked_for": bool(first)})], name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue=event_queue, task_id=context.task_id, context_id=context.context_id).cancel()


def app(port: int) -> Starlette:
    card = AgentCard(
        name="peer",
        description="A test peer.",
        version="1",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=[AgentSkill(id="echo", name="echo", description="Echoes.", tags=["test"])],
        supported_interfaces=[
            AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0", url=f"http://127.0.0.1:{port}/rpc")
        ],
    )
    handler = DefaultRequestHandler(agent_executor=PeerExecutor(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/rpc")])


if __name__ == "__main__":
    port = int(sys.argv[1])
    uvicorn.run(app(port), host="127.0.0.1", port=port, log_level="warning")
