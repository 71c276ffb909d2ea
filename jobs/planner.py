"""The planner (master agent): turns a job's free-text requirements into a plan.

A job submitted without a plan (allowed only when an LLM is configured) gets one task,
``_plan``, run by the ``planner`` agent like any other task: on a worker, with retries,
heartbeats and a timeout, so nobody waits on a slow LLM while holding the job's lock. The planner agent
1. shows the LLM the registered agents and the plan format, and the requirements;
2. parses the JSON plan from the answer (bare, or inside a fenced block);
3. validates it exactly as a submitted plan (jobs.plans.plan_validate), plus the job's
   ``max_tasks`` budget;
4. if it is invalid, asks again with the validation errors, up to
   AGENTBUS_PLANNER_TRIES asks in all; then fails the task for good, naming the last
   problems, which fails the job with that reason.
Its output ``{"plan": ...}`` becomes the job's plan when the lifecycle settles the job
after the planner's success (jobs.lifecycle), which then writes the tasks as for a
submitted plan, in the same transaction.
"""

from __future__ import annotations

import json
import re

from django.conf import settings

from agents.kinds import AgentKind
from agents.registry import AgentSpec, NonRetryableError, agent_register, agents_all
from core.errors import ApplicationError
from jobs.plans import PLANNER_AGENT, PLANNER_MAX_ATTEMPTS, PLANNER_TIMEOUT, plan_check, plan_problems

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


def _describe_agents() -> str:
    lines = []
    for spec in agents_all():
        if spec.kind == AgentKind.PLANNER:
            continue
        lines.append(f"- {spec.name} ({spec.kind}): {spec.description or 'no description'}")
    return "\n".join(lines) or "- echo (python): returns its input"


def plan_with_llm(ctx) -> dict:
    """The planner agent's handler (see the module docstring)."""
    from agents.llm import llm_chat

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
            problems = plan_problems(exc)
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
        kind=AgentKind.PLANNER,
        queue=settings.AGENTBUS_PLANNER_QUEUE,
        timeout=PLANNER_TIMEOUT,
        max_attempts=PLANNER_MAX_ATTEMPTS,
        description="The master agent: plans a job from its requirements with the configured LLM.",
        handler=plan_with_llm,
    )


agent_register(_planner_spec())
