"""The planner (master agent): turns a job's free-text requirements into a plan.

A job submitted without a plan (allowed only when an LLM is configured) gets one task,
``_plan``, run by the ``planner`` agent like any other task: on a worker, with retries,
heartbeats and a timeout, so the orchestrator never waits on a slow LLM while holding
the job's lock. The planner agent
1. shows the LLM the registered agents and the plan format, and the requirements;
2. parses the JSON plan from the answer (bare, or inside a fenced block);
3. validates it exactly as a submitted plan (jobs.plans.plan_validate), plus the job's
   ``max_tasks`` budget;
4. if it is invalid, asks again with the validation errors, up to
   AGENTBUS_PLANNER_TRIES asks in all; then fails the task for good, naming the last
   problems, which fails the job with that reason.
Its output ``{"plan": ...}`` becomes the job's plan in ``job_plan_step``, called from
orchestration.services.job_advance, which then writes the tasks as for a submitted plan.
"""

from __future__ import annotations

import json
import re

from django.conf import settings

from agentbus_site.api_errors import ApplicationError
from jobs.events import NewEvent
from jobs.models import Job, JobStatus, Task, TaskStatus
from jobs.plans import plan_validate
from workers.registry import AgentSpec, NonRetryableError, agent_register, agents_all

PLANNER_AGENT = "planner"
PLANNER_TASK_KEY = "_plan"

SYSTEM_PROMPT = """You are the planner of a job platform. Break the user's requirements into \
a plan: a small DAG of tasks, each run by one of the available agents.

Available agents (use only these names):
{agents}

Answer with one JSON object and nothing else, in this format:
{{"tasks": [{{"key": "short_unique_key", "agent": "agent_name", "input": {{}}, "depends_on": ["other_key"]}}]}}

Rules: keys are 1-100 characters of A-Z a-z 0-9 _ . - and unique; "depends_on" lists keys \
of tasks that must finish first (no cycles); "input" is a JSON object for the agent.{limit}"""


def plan_parse(text: str) -> object:
    """The JSON plan in an LLM's answer: the whole answer, a fenced block, or the
    outermost {...}. Raises ValueError when there is none."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in re.finditer(r"```(?:json|JSON)?\s*\n?(.*?)```", text, re.DOTALL)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("the answer holds no JSON object")


def plan_check(plan: object, *, max_tasks: int | None) -> list[dict]:
    """Validate a planned plan: plan_validate, the planner's reserved names, the budget.
    Raises ApplicationError whose fields name each problem."""
    tasks = plan_validate(plan)
    problems: dict[str, list[str]] = {}
    for i, task in enumerate(plan["tasks"]):
        if task["key"] == PLANNER_TASK_KEY:
            problems.setdefault(f"plan.tasks[{i}].key", []).append(f"'{PLANNER_TASK_KEY}' is reserved")
        if task["agent"] == PLANNER_AGENT:
            problems.setdefault(f"plan.tasks[{i}].agent", []).append("the planner cannot be part of a plan")
    if max_tasks is not None and len(tasks) > max_tasks:
        problems.setdefault("plan.tasks", []).append(
            f"budget: has {len(tasks)} tasks, more than the job's max_tasks of {max_tasks}"
        )
    if problems:
        raise ApplicationError("invalid plan", code="invalid_plan", fields=problems)
    return tasks


def _describe_agents() -> str:
    lines = []
    for spec in agents_all():
        if spec.kind == "planner":
            continue
        lines.append(f"- {spec.name} ({spec.kind}): {spec.description or 'no description'}")
    return "\n".join(lines) or "- echo (python): returns its input"


def _problems(exc: ApplicationError) -> str:
    return "; ".join(f"{path}: {', '.join(messages)}" for path, messages in exc.fields.items()) or exc.message


def plan_with_llm(ctx) -> dict:
    """The planner agent's handler (see the module docstring)."""
    from workers.llm_agent import llm_chat

    if not ctx.requirements.strip():
        raise NonRetryableError("the job has neither a plan nor requirements to plan from")
    spec = _planner_spec()
    max_tasks = ctx.job.max_tasks
    limit = f"\nUse at most {max_tasks} tasks." if max_tasks else ""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT.format(agents=_describe_agents(), limit=limit)},
        {"role": "user", "content": ctx.requirements},
    ]
    human = getattr(ctx, "human", None) or {}
    if human.get("feedback"):
        # A reviewer rejected the previous plan (jobs.reviews): show it, and why.
        messages += [
            {"role": "assistant", "content": json.dumps(human.get("rejected_output"))},
            {
                "role": "user",
                "content": f"A reviewer rejected that plan: {human['feedback']}\nAnswer with a better plan, the JSON object only.",
            },
        ]
    tries = settings.AGENTBUS_PLANNER_TRIES
    problems = ""
    for number in range(1, tries + 1):
        ctx.progress((number - 1) / tries, f"asking the LLM for a plan (try {number} of {tries})")
        reply = llm_chat(spec=spec, ctx=ctx, messages=messages)
        try:
            plan = plan_parse(reply.text)
            plan_check(plan, max_tasks=max_tasks)
            return {"plan": plan, "tries": number, "model": reply.model}
        except ValueError as exc:
            problems = f"body: {exc}"
        except ApplicationError as exc:
            problems = _problems(exc)
        messages += [
            {"role": "assistant", "content": reply.text},
            {
                "role": "user",
                "content": f"That plan is invalid: {problems}\nAnswer again with the corrected JSON object only.",
            },
        ]
    raise NonRetryableError(f"the planner could not produce a valid plan in {tries} tries; last problems: {problems}")


def _planner_spec() -> AgentSpec:
    return AgentSpec(
        name=PLANNER_AGENT,
        kind="planner",
        queue=settings.AGENTBUS_PLANNER_QUEUE,
        timeout=300,
        max_attempts=3,
        description="The master agent: plans a job from its requirements with the configured LLM.",
        handler=plan_with_llm,
    )


agent_register(_planner_spec())


# --- the orchestrator's side -------------------------------------------------------------


def job_plan_step(job: Job, now, events: list[NewEvent]) -> list[Task]:
    """For a job without a plan (inside job_advance, under the job's lock): start the
    planner task, or, once it has succeeded, set ``job.plan`` from its output so that
    job_advance goes on as for a job submitted with that plan (plan review included).
    Returns the planner's task, which fails the job like any task if it fails.
    """
    planner = Task.objects.filter(job_id=job.id, key=PLANNER_TASK_KEY).first()
    if planner is None:
        spec = _planner_spec()
        planner = Task.objects.create(
            job_id=job.id,
            key=PLANNER_TASK_KEY,
            agent=PLANNER_AGENT,
            queue=spec.queue,
            max_attempts=spec.max_attempts,
            timeout=spec.timeout,
            created_at=now,
        )
        Job.objects.filter(pk=job.id).update(status=JobStatus.PLANNING, started_at=now)
        job.status = JobStatus.PLANNING
        events.append(NewEvent("job.status", status=JobStatus.PLANNING))
        return [planner]
    if planner.status != TaskStatus.SUCCEEDED:
        return [planner]  # dispatched, retried and, if it fails for good, failing the job
    try:
        tasks = plan_check((planner.output or {}).get("plan"), max_tasks=_job_max_tasks(job))
    except ApplicationError as exc:  # an agent vanished between planning and now
        planner.status, planner.error = TaskStatus.FAILED, f"the plan is no longer valid: {_problems(exc)}"
        Task.objects.filter(pk=planner.pk).update(status=planner.status, error=planner.error)
        return [planner]
    job.plan = {"tasks": tasks}
    Job.objects.filter(pk=job.id).update(plan=job.plan)
    events.append(NewEvent("job.planned", data={"tasks": [t["key"] for t in tasks]}))
    return [planner]


def _job_max_tasks(job: Job) -> int | None:
    return Job.objects.filter(pk=job.id).values_list("max_tasks", flat=True).get()
