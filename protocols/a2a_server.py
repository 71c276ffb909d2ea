"""agentbus as an A2A server (the official ``a2a-sdk``, A2A 1.0 over JSON-RPC).

An A2A task is an agentbus job: its id is the job's id.

- SendMessage (``message/send``) without a task id creates a job: requirements from
  the message's text parts, an explicit plan from a data part (``{"tasks": [...]}``,
  or a whole job body ``{"plan": ..., "requirements"?, ...}``). The message id is the
  job's idempotency key, so a client retrying a send gets the same job. Unless the
  client asks to return immediately, the answer waits until the job finishes or stops
  at a review gate.
- A job waiting for a human (a pending review: plan, before/after a task, an agent's
  question) is ``TASK_STATE_INPUT_REQUIRED``; the status message says what is asked
  and carries the review as data. The client's next message on that task answers it:
  a question gets the text (or a data part's ``answer``) as its answer; another gate
  takes "approve", "reject <feedback>", or a data part ``{"decision", ...}`` in the
  REST decision's shape.
- SendStreamingMessage streams the task, then a status update per job state change,
  an artifact update per task output, and the final result as the last artifact; the
  stream ends when the job finishes or waits for input. SubscribeToTask resumes one.
- GetTask, CancelTask and ListTasks read and cancel jobs through the same services and
  selectors as REST: another user's job is "task not found".

Auth: the REST API's tokens as ``Authorization: Bearer <token>`` (declared in the card).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_text_part
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.types import a2a_pb2 as pb
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_CURRENT
from a2a.utils.errors import (
    A2AError,
    ExtendedAgentCardNotConfiguredError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
)
from channels.db import database_sync_to_async
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jobs.models import JOB_TERMINAL
from protocols import operations
from protocols.auth import TokenAuth, django_user_of
from protocols.follow import job_events_follow

RPC_PATH = "/a2a"
# How long a blocking SendMessage waits for the job to finish or to need input.
BLOCKING_WAIT_SECONDS = 300
CONTEXT_KEY = "a2a_context_id"

STATES = {
    "submitted": pb.TASK_STATE_SUBMITTED,
    "planning": pb.TASK_STATE_WORKING,
    "running": pb.TASK_STATE_WORKING,
    "awaiting_review": pb.TASK_STATE_INPUT_REQUIRED,
    "succeeded": pb.TASK_STATE_COMPLETED,
    "failed": pb.TASK_STATE_FAILED,
    "cancelled": pb.TASK_STATE_CANCELED,
}
FINAL_STATES = (pb.TASK_STATE_COMPLETED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELED)
# Events after which a job may have started or stopped waiting for a human.
GATE_EVENTS = ("review.opened", "review.decided", "review.closed")


def _plain(value: Any) -> Any:
    """JSON from a protobuf Value, whose numbers are all doubles: whole ones back to int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _refusal(exc: operations.OperationError, *, cancel: bool = False) -> A2AError:
    data = {**exc.body, "status": exc.status}
    if exc.status == 404:
        return TaskNotFoundError(exc.body["detail"], data=data)
    if cancel and exc.status == 409:
        return TaskNotCancelableError(exc.body["detail"], data=data)
    if exc.status == 400:
        return InvalidParamsError(str(exc), data=data)
    if exc.status < 500:
        return InvalidRequestError(str(exc), data=data)
    return InternalError(str(exc), data=data)


def _context_id(job: dict) -> str:
    return str((job.get("metadata") or {}).get(CONTEXT_KEY) or job["id"])


def _review_text(review: dict) -> str:
    where = review.get("task_key") or "the plan"
    if review["kind"] == "question":
        proposed = review.get("proposed") or {}
        options = proposed.get("options")
        choices = f" (one of: {', '.join(map(str, options))})" if options else ""
        return f"{where} asks: {proposed.get('question')}{choices}. Reply with the answer."
    what = {"plan": "the plan", "before": f"the input of {where}", "after": f"the output of {where}"}.get(
        review["kind"], where
    )
    return f"Review {what}: reply 'approve', 'reject <feedback>', or a data part {{\"decision\": ...}}."


def _status_message(job: dict, reviews: list[dict], state: int) -> pb.Message | None:
    context_id = _context_id(job)
    if state == pb.TASK_STATE_INPUT_REQUIRED and reviews:
        review = reviews[-1]  # the oldest pending gate is answered first
        return pb.Message(
            message_id=str(uuid.uuid4()),
            role=pb.ROLE_AGENT,
            task_id=job["id"],
            context_id=context_id,
            parts=[new_text_part(_review_text(review)), new_data_part({"review": _jsonable(review)})],
        )
    if state == pb.TASK_STATE_FAILED and job.get("error"):
        return pb.Message(
            message_id=str(uuid.uuid4()),
            role=pb.ROLE_AGENT,
            task_id=job["id"],
            context_id=context_id,
            parts=[new_text_part(job["error"])],
        )
    return None


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _state(job: dict, reviews: list[dict]) -> int:
    state = STATES.get(job["status"], pb.TASK_STATE_WORKING)
    if state == pb.TASK_STATE_WORKING and reviews:
        return pb.TASK_STATE_INPUT_REQUIRED
    return state


def _result_artifact(results: dict) -> pb.Artifact:
    return pb.Artifact(
        artifact_id=f"{results['job']}:result",
        name="result",
        description="The job's final result: the outputs of its final tasks.",
        parts=[new_data_part(_jsonable(results.get("result")))],
    )


def _task_artifact(job_id: str, key: str, output: Any) -> pb.Artifact:
    return pb.Artifact(
        artifact_id=f"{job_id}:{key}", name=key, description=f"The output of task {key}.",
        parts=[new_data_part(_jsonable(output))],
    )  # fmt: skip


class JobSnapshot:
    """A job as A2A shows it: the job, its pending reviews and, once finished, results."""

    def __init__(self, job: dict, reviews: list[dict], results: dict | None) -> None:
        self.job = job
        self.reviews = reviews
        self.results = results
        self.state = _state(job, reviews)

    @property
    def task_id(self) -> str:
        return self.job["id"]

    @property
    def context_id(self) -> str:
        return _context_id(self.job)

    def status(self) -> pb.TaskStatus:
        status = pb.TaskStatus(state=self.state)
        message = _status_message(self.job, self.reviews, self.state)
        if message is not None:
            status.message.CopyFrom(message)
        status.timestamp.GetCurrentTime()
        return status

    def artifacts(self) -> list[pb.Artifact]:
        if self.results is None:
            return []
        artifacts = [
            _task_artifact(self.task_id, key, task["output"])
            for key, task in self.results["tasks"].items()
            if task["status"] == "succeeded"
        ]
        return [*artifacts, _result_artifact(self.results)]

    def task(self) -> pb.Task:
        return pb.Task(id=self.task_id, context_id=self.context_id, status=self.status(), artifacts=self.artifacts())


def _snapshot(user, job_id: str) -> JobSnapshot:
    job = operations.job_show(user, job_id)
    reviews = (
        operations.reviews_listed(user, status="pending", job_id=job["id"]) if job["status"] not in JOB_TERMINAL else []
    )
    results = operations.job_results(user, job_id) if job["status"] in JOB_TERMINAL else None
    return JobSnapshot(job, reviews, results)


def _spec_from(message: pb.Message) -> dict:
    """A job body from a message: requirements from its text, a plan (or a whole job
    body) from its data part."""
    spec: dict[str, Any] = {}
    text = "\n".join(t for t in get_text_parts(message.parts) if t.strip())
    for data in (_plain(d) for d in get_data_parts(message.parts)):
        if isinstance(data, dict) and "plan" in data:
            spec.update(data)
        elif isinstance(data, dict) and "tasks" in data:
            spec["plan"] = data
        else:
            raise operations.OperationError(
                400,
                "validation_error",
                'A data part must be a plan {"tasks": [...]} or a job body {"plan": ...}.',
                {"message.parts": ["a data part is neither a plan nor a job body"]},
            )
    if text and "requirements" not in spec:
        spec["requirements"] = text
    if not spec:
        raise operations.OperationError(
            400, "validation_error", "The message has no text and no plan.", {"message.parts": ["empty"]}
        )
    return spec


def _decision_from(message: pb.Message, review: dict) -> dict:
    """A review decision from the client's reply (see the module docstring)."""
    data = [d for d in (_plain(d) for d in get_data_parts(message.parts)) if isinstance(d, dict)]
    if data and "decision" in data[0]:
        return data[0]
    text = "\n".join(get_text_parts(message.parts)).strip()
    if review["kind"] == "question":
        answer = data[0]["answer"] if data and "answer" in data[0] else text
        return {"decision": "respond", "answer": answer}
    word, _, rest = text.partition(" ")
    if word.lower() in ("approve", "approved", "yes", "ok", "lgtm"):
        return {"decision": "approve", "comment": rest.strip()}
    if word.lower() in ("reject", "rejected", "no"):
        return {"decision": "reject", "comment": rest.strip()}
    raise operations.OperationError(
        400,
        "validation_error",
        f"This review takes 'approve', 'reject <feedback>', or a data part {{\"decision\": ...}}; got {text!r}.",
        {"message.parts": ["not a decision"]},
    )


def _send(user, message: pb.Message) -> tuple[str, bool]:
    """Create a job from a new message, or answer the gate of an existing one. Returns
    the job's id and whether the message answered a gate."""
    if message.task_id:
        job = operations.job_show(user, message.task_id)
        if job["status"] in JOB_TERMINAL:
            raise operations.OperationError(
                409, "job_finished", f"The task is already {job['status']}; send a new message without a task id."
            )
        pending = operations.reviews_listed(user, status="pending", job_id=job["id"])
        if not pending:
            raise operations.OperationError(
                409, "no_input_required", "The task is not waiting for input; there is nothing to answer."
            )
        review = pending[-1]
        operations.review_decide_as(user, review["id"], _decision_from(message, review))
        return job["id"], True
    spec = _spec_from(message)
    metadata = dict(spec.get("metadata") or {})
    if message.context_id:
        metadata[CONTEXT_KEY] = message.context_id
    spec["metadata"] = metadata
    job, _ = operations.job_submit_as(user, spec=spec, idempotency_key=f"a2a:{message.message_id}"[:255])
    return str(job.id), False


def _db(func):
    return database_sync_to_async(func, thread_sensitive=False)


class JobRequestHandler(RequestHandler):
    """The A2A methods, each on the caller's jobs."""

    async def _call(self, func, *args, cancel: bool = False):
        try:
            return await _db(func)(*args)
        except operations.OperationError as exc:
            raise _refusal(exc, cancel=cancel) from None

    @staticmethod
    def _user(context: ServerCallContext):
        return context.state["agentbus_user"]

    async def on_get_task(self, params: pb.GetTaskRequest, context: ServerCallContext) -> pb.Task | None:
        return (await self._call(_snapshot, self._user(context), params.id)).task()

    async def on_list_tasks(self, params: pb.ListTasksRequest, context: ServerCallContext) -> pb.ListTasksResponse:
        user = self._user(context)
        size = params.page_size or 50

        def listed() -> list[JobSnapshot]:
            from jobs.selectors import job_list

            jobs = job_list(user=user)
            if params.context_id:
                jobs = jobs.filter(metadata__contains={CONTEXT_KEY: params.context_id})
            return [_snapshot(user, str(job_id)) for job_id in jobs.values_list("id", flat=True)[: min(size, 100)]]

        snapshots = await self._call(listed)
        return pb.ListTasksResponse(tasks=[s.task() for s in snapshots], page_size=size, total_size=len(snapshots))

    async def on_cancel_task(self, params: pb.CancelTaskRequest, context: ServerCallContext) -> pb.Task | None:
        user = self._user(context)
        await self._call(operations.job_cancel_as, user, params.id, cancel=True)
        return (await self._call(_snapshot, user, params.id)).task()

    async def on_message_send(self, params: pb.SendMessageRequest, context: ServerCallContext) -> pb.Task:
        user = self._user(context)
        job_id, _ = await self._call(_send, user, params.message)
        if params.configuration.return_immediately:
            return (await self._call(_snapshot, user, job_id)).task()
        seen: list[JobSnapshot] = []
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_settled(user, job_id, seen), BLOCKING_WAIT_SECONDS)
        settled = seen[-1] if seen and seen[-1].state in (*FINAL_STATES, pb.TASK_STATE_INPUT_REQUIRED) else None
        return (settled or await self._call(_snapshot, user, job_id)).task()

    async def _until_settled(self, user, job_id: str, seen: list) -> None:
        async for _ in self._stream(user, job_id, first=False, seen=seen):
            pass

    async def on_message_send_stream(
        self, params: pb.SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any]:
        user = self._user(context)
        job_id, _ = await self._call(_send, user, params.message)
        async for event in self._stream(user, job_id):
            yield event

    async def on_subscribe_to_task(
        self, params: pb.SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any]:
        user = self._user(context)
        async for event in self._stream(user, params.id):
            yield event

    async def _stream(self, user, job_id: str, *, first: bool = True, seen: list | None = None) -> AsyncGenerator[Any]:
        """The task now, then its changes until it finishes or waits for input.

        1. Read the job's position (its last seq) and yield the task as it is then.
        2. Follow the event log after that seq; a job status change, or a review opened
           or decided, re-reads the job and yields a status update when its A2A state
           changed (a task's own changes cannot change it: a task waiting for a human
           opens a review); each task that succeeds yields its output as an artifact.
        3. Stop after the final state's update (with the result artifact before it), or
           after an input-required update: the client's answer is a new message.
        """
        snapshot = await self._call(_snapshot, user, job_id)
        if seen is not None:
            seen.append(snapshot)
        if first:
            yield snapshot.task()
        if snapshot.state in FINAL_STATES or snapshot.state == pb.TASK_STATE_INPUT_REQUIRED:
            return
        state = snapshot.state
        streamed: set[str] = set()  # tasks whose output went out as an artifact
        async with aclosing(job_events_follow(snapshot.task_id, after=snapshot.job["last_seq"])) as events:
            async for event in events:
                kind = event["type"]
                if kind == "task.status" and event.get("status") == "succeeded" and event.get("task"):
                    key, output = await self._call(_task_output, user, job_id, event["task"])
                    streamed.add(key)
                    yield pb.TaskArtifactUpdateEvent(
                        task_id=snapshot.task_id,
                        context_id=snapshot.context_id,
                        artifact=_task_artifact(snapshot.task_id, key, output),
                        last_chunk=True,
                    )
                if kind not in ("job.status", *GATE_EVENTS):
                    continue
                snapshot = await self._call(_snapshot, user, job_id)
                if seen is not None:
                    seen.append(snapshot)
                if snapshot.state == state and snapshot.state not in FINAL_STATES:
                    continue
                state = snapshot.state
                if state == pb.TASK_STATE_COMPLETED and snapshot.results is not None:
                    # Outputs committed before the stream began (a gate's decision that
                    # finished a task, say) go out now, before the result.
                    for key, task in snapshot.results["tasks"].items():
                        if task["status"] == "succeeded" and key not in streamed:
                            yield pb.TaskArtifactUpdateEvent(
                                task_id=snapshot.task_id,
                                context_id=snapshot.context_id,
                                artifact=_task_artifact(snapshot.task_id, key, task["output"]),
                                last_chunk=True,
                            )
                    yield pb.TaskArtifactUpdateEvent(
                        task_id=snapshot.task_id,
                        context_id=snapshot.context_id,
                        artifact=_result_artifact(snapshot.results),
                        last_chunk=True,
                    )
                yield pb.TaskStatusUpdateEvent(
                    task_id=snapshot.task_id, context_id=snapshot.context_id, status=snapshot.status()
                )
                if state in FINAL_STATES or state == pb.TASK_STATE_INPUT_REQUIRED:
                    return

    async def on_create_task_push_notification_config(self, params, context):
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(self, params, context):
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(self, params, context):
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(self, params, context):
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(self, params, context):
        raise ExtendedAgentCardNotConfiguredError


def _task_output(user, job_id: str, task_id: str) -> tuple[str, Any]:
    """A task's key and output (an event names the task by id; not every one has its key)."""
    from jobs.models import Task

    job = operations.job_for(user, job_id)
    return Task.objects.filter(job=job, pk=task_id).values_list("key", "output").first() or ("?", None)


class UserContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's context, plus the Django user TokenAuth found."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["agentbus_user"] = django_user_of(request.scope)
        return context


def agent_card(base_url: str) -> pb.AgentCard:
    """What agentbus accepts, where, and how to authenticate."""
    card = pb.AgentCard(
        name="agentbus",
        description=(
            "Runs AI-agent jobs reliably: send requirements as text, or an explicit plan of tasks as a data "
            'part {"tasks": [{"key", "agent", "input"?, "depends_on"?, "review"?}]}. Jobs that reach a '
            "review gate ask for input (approve, reject, or an answer)."
        ),
        version="1",
        capabilities=pb.AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["application/json", "text/plain"],
        supported_interfaces=[
            pb.AgentInterface(
                url=f"{base_url}{RPC_PATH}", protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION_CURRENT
            ),
            pb.AgentInterface(
                url=f"{base_url}{RPC_PATH}", protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION_0_3
            ),
        ],
        skills=[
            pb.AgentSkill(
                id="run-job",
                name="Run a job",
                description="Plan (or take a plan), run the tasks on registered agents, stop for human review.",
                tags=["orchestration", "workflow", "human-in-the-loop"],
                examples=["Summarise the attached report, then translate the summary into French."],
            )
        ],
    )
    card.security_schemes["agentbusToken"].http_auth_security_scheme.CopyFrom(
        pb.HTTPAuthSecurityScheme(
            scheme="bearer", description="An agentbus API token (POST /auth/token), as for the REST API."
        )
    )
    requirement = card.security_requirements.add()
    requirement.schemes["agentbusToken"].SetInParent()
    return card


async def agent_card_view(request: Request) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    return JSONResponse(agent_card_to_dict(agent_card(base)))


def a2a_asgi_app():
    """The card (public) at the well-known path; the JSON-RPC endpoint behind TokenAuth."""
    rpc = Starlette(
        routes=create_jsonrpc_routes(
            request_handler=JobRequestHandler(),
            rpc_url=RPC_PATH,
            context_builder=UserContextBuilder(),
            # 0.3 clients (message/send, tasks/get, no A2A-Version header) too, as the SDK offers.
            enable_v0_3_compat=True,
        )
    )
    guarded = TokenAuth(rpc)
    card = Starlette(routes=[Route(AGENT_CARD_WELL_KNOWN_PATH, agent_card_view, methods=["GET"])])

    async def app(scope, receive, send) -> None:
        if scope.get("path") == AGENT_CARD_WELL_KNOWN_PATH:
            await card(scope, receive, send)
        else:
            await guarded(scope, receive, send)

    return app
