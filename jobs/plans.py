"""Plan validation: the one check every plan passes, submitted by a user or by the planner.

A plan is ``{"tasks": [task, ...]}``, a task
``{"key", "agent", "input"?, "depends_on"?, "review"?, "max_attempts"?, "timeout"?,
"allow_failure"?, "priority"?, "gate"?}`` (``gate``: who decides its reviews, see
jobs.reviews; ``priority``: the task's own, else its job's, see jobs.scheduling).
Errors name the offending field as a path into the request body,
e.g. ``plan.tasks[2].depends_on``.
"""

from __future__ import annotations

import re
from collections import deque

from django.conf import settings
from rest_framework import serializers

from agents.registry import agent_get
from core.errors import ApplicationError, flatten_errors
from core.fields import BoundedJSONObjectField, StrictBooleanField, StrictCharField, StrictIntegerField
from jobs.models import ReviewMode, Task
from jobs.scheduling import fair_key_of

KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

# A job submitted without a plan gets one task, ``_plan``, run by the ``planner`` agent
# (the master agent, jobs.planner); its output becomes the job's plan.
PLANNER_AGENT = "planner"
PLANNER_TASK_KEY = "_plan"
PLANNER_TIMEOUT = 300
PLANNER_MAX_ATTEMPTS = 3


class GateSerializer(serializers.Serializer):
    """Who decides a task's review gates (and its questions), by when, and what happens
    if nobody does (see jobs.reviews)."""

    assignee = StrictCharField(max_length=150, required=False)
    group = StrictCharField(max_length=150, required=False)
    deadline = StrictIntegerField(required=False, min_value=1, max_value=30 * 24 * 3600)
    default = serializers.ChoiceField(choices=["approve", "reject", "fail"], required=False)
    max_rejections = StrictIntegerField(required=False, min_value=0, max_value=20)

    # Who may be named is decided with the submitter known (jobs.reviews.gate_policy), without
    # saying here whether a user or group of that name exists.


class PlanTaskSerializer(serializers.Serializer):
    key = StrictCharField(max_length=100)
    agent = StrictCharField(max_length=100)
    input = BoundedJSONObjectField(max_bytes=256 * 1024, required=False, default=dict)
    depends_on = serializers.ListField(child=StrictCharField(max_length=100), required=False, default=list)
    review = serializers.ChoiceField(choices=ReviewMode.values, required=False, default=ReviewMode.NONE)
    max_attempts = StrictIntegerField(required=False, min_value=1)
    timeout = StrictIntegerField(required=False, min_value=1)
    allow_failure = StrictBooleanField(required=False, default=False)
    priority = StrictIntegerField(required=False, min_value=-100, max_value=100)
    gate = GateSerializer(required=False)

    def validate_key(self, value: str) -> str:
        if not KEY_RE.match(value):
            raise serializers.ValidationError("must be 1-100 characters of A-Z a-z 0-9 _ . -")
        return value

    def validate_max_attempts(self, value: int) -> int:
        if value > settings.AGENTBUS_MAX_TASK_ATTEMPTS:
            raise serializers.ValidationError(f"must be at most {settings.AGENTBUS_MAX_TASK_ATTEMPTS}")
        return value

    def validate_timeout(self, value: int) -> int:
        if value > settings.AGENTBUS_MAX_TASK_TIMEOUT:
            raise serializers.ValidationError(f"must be at most {settings.AGENTBUS_MAX_TASK_TIMEOUT} seconds")
        return value


class PlanSerializer(serializers.Serializer):
    tasks = PlanTaskSerializer(many=True, allow_empty=False)


def plan_validate(plan: object, *, prefix: str = "plan") -> list[dict]:
    """Validate a plan; returns its tasks with defaults filled in, in a topological order.

    Raises ApplicationError (400) whose ``fields`` name every problem found.
    """
    if not isinstance(plan, dict):
        raise _invalid({prefix: ["must be an object with a 'tasks' list"]})
    tasks_raw = plan.get("tasks")
    if isinstance(tasks_raw, list) and len(tasks_raw) > settings.AGENTBUS_MAX_PLAN_TASKS:
        raise _invalid({f"{prefix}.tasks": [f"has {len(tasks_raw)} tasks; at most {settings.AGENTBUS_MAX_PLAN_TASKS}"]})
    serializer = PlanSerializer(data=plan)
    if not serializer.is_valid():
        raise _invalid(flatten_errors(serializer.errors, prefix))
    tasks = [dict(t) for t in serializer.validated_data["tasks"]]

    errors: dict[str, list[str]] = {}
    index_of: dict[str, int] = {}
    for i, task in enumerate(tasks):
        path = f"{prefix}.tasks[{i}]"
        if task["key"] in index_of:
            errors.setdefault(f"{path}.key", []).append(
                f"duplicate key '{task['key']}' (also tasks[{index_of[task['key']]}])"
            )
        else:
            index_of[task["key"]] = i
        spec = agent_get(task["agent"])
        if spec is None:
            errors.setdefault(f"{path}.agent", []).append(f"unknown agent '{task['agent']}'")
        else:
            task.setdefault("max_attempts", spec.max_attempts)
            task.setdefault("timeout", spec.timeout)
            task["queue"] = spec.queue
        if len(set(task["depends_on"])) != len(task["depends_on"]):
            errors.setdefault(f"{path}.depends_on", []).append("lists a dependency twice")
    for i, task in enumerate(tasks):
        for dep in task["depends_on"]:
            if dep == task["key"]:
                errors.setdefault(f"{prefix}.tasks[{i}].depends_on", []).append("a task cannot depend on itself")
            elif dep not in index_of:
                errors.setdefault(f"{prefix}.tasks[{i}].depends_on", []).append(f"unknown task key '{dep}'")
    if errors:
        raise _invalid(errors)

    order = _topological_order(tasks)
    if order is None:
        raise _invalid({f"{prefix}.tasks": ["the dependencies form a cycle"]})
    return [tasks[i] for i in order]


def _topological_order(tasks: list[dict]) -> list[int] | None:
    """Kahn's algorithm; None when there is a cycle.

    1. Count each task's unmet dependencies; queue the tasks with none.
    2. Take a task from the queue, emit it, and release each task that depends on it.
    3. If fewer tasks were emitted than exist, the rest lie on a cycle.
    """
    index_of = {t["key"]: i for i, t in enumerate(tasks)}
    waiting = [len(t["depends_on"]) for t in tasks]
    dependents: list[list[int]] = [[] for _ in tasks]
    for i, task in enumerate(tasks):
        for dep in task["depends_on"]:
            dependents[index_of[dep]].append(i)
    ready = deque(i for i, n in enumerate(waiting) if n == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    return order if len(order) == len(tasks) else None


def _invalid(fields: dict[str, list[str]]) -> ApplicationError:
    first_path, first_messages = next(iter(fields.items()))
    return ApplicationError(f"{first_path}: {first_messages[0]}", code="invalid_plan", fields=fields)


def plan_check(plan: object, *, max_tasks: int | None) -> list[dict]:
    """Validate a plan the planner made: plan_validate, the planner's reserved names, the
    job's budget. Raises ApplicationError whose fields name each problem."""
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


def plan_problems(exc: ApplicationError) -> str:
    """One line naming every problem of an invalid plan (for the planner's LLM and errors)."""
    return "; ".join(f"{path}: {', '.join(messages)}" for path, messages in exc.fields.items()) or exc.message


def task_rows(*, job, specs: list[dict], now) -> list[Task]:
    """Unsaved Task rows for validated plan tasks (a plan, a spawn): the one place a plan
    task becomes a row. The job gives their scheduling: its priority (unless a task has
    its own), its owner's fair share and its concurrency key (jobs.scheduling)."""
    return [
        Task(
            job_id=job.id,
            **task_scheduling(job, spec.get("priority")),
            key=spec["key"],
            agent=spec["agent"],
            queue=spec["queue"],
            input=spec.get("input", {}),
            depends_on=spec.get("depends_on", []),
            review=spec.get("review", ReviewMode.NONE),
            allow_failure=spec.get("allow_failure", False),
            max_attempts=spec["max_attempts"],
            timeout=spec["timeout"],
            created_at=now,
        )
        for spec in specs
    ]


def task_scheduling(job, priority: int | None = None) -> dict:
    """The scheduling columns of a new task of ``job`` (jobs.scheduling)."""
    return {
        "priority": job.priority if priority is None else priority,
        "fair_key": fair_key_of(job.owner_id, job.concurrency_key),
        "concurrency_key": job.concurrency_key,
        "concurrency_limit": job.concurrency_limit,
    }
