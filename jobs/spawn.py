"""Dynamic work: follow-up tasks an agent returns, joining its job's DAG.

A spawned task is a plan task (same fields, same validation as a submitted plan) that
depends, besides whatever it lists, on the task that spawned it, so it sees that
task's output upstream and the job's final result comes from the new leaves. It may
depend on any existing task of the job and on the others spawned with it. The job's
limits bound it: ``max_tasks`` (the job's budget, else AGENTBUS_MAX_PLAN_TASKS).
"""

from __future__ import annotations

from django.conf import settings

from agents.registry import NonRetryableError
from core.errors import ApplicationError
from jobs.plans import plan_validate


def spawn_validate(*, specs: list, parent_key: str, existing_keys: set[str], max_tasks: int | None) -> list[dict]:
    """Validate follow-up tasks; returns them ready to write (defaults filled in).

    Raises NonRetryableError naming every problem: a spawn that is wrong now will be
    wrong on every attempt, and one that breaks the budget stops the job's growth.
    """
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise NonRetryableError("spawn: must be a list of task objects")
    limit = max_tasks if max_tasks is not None else settings.AGENTBUS_MAX_PLAN_TASKS
    if len(existing_keys) + len(specs) > limit:
        raise NonRetryableError(
            f"budget: spawning {len(specs)} task(s) would make {len(existing_keys) + len(specs)} tasks, "
            f"over the job's max_tasks of {limit}"
        )
    new_keys = {s.get("key") for s in specs}
    local = []
    outside_deps = []
    for spec in specs:
        deps = spec.get("depends_on", [])
        if not isinstance(deps, list):
            deps = [deps]  # let plan validation name the type error
        local.append({**spec, "depends_on": [d for d in deps if d in new_keys or not isinstance(d, str)]})
        outside_deps.append([d for d in deps if isinstance(d, str) and d not in new_keys])
    try:
        tasks = plan_validate({"tasks": local}, prefix="spawn")
    except ApplicationError as exc:
        problems = "; ".join(f"{path}: {', '.join(msgs)}" for path, msgs in exc.fields.items())
        raise NonRetryableError(f"invalid spawn: {problems}") from None
    outside_by_key = {s.get("key"): deps for s, deps in zip(specs, outside_deps)}
    for task in tasks:
        if task["key"] in existing_keys:
            raise NonRetryableError(f"invalid spawn: task key '{task['key']}' already exists in the job")
        unknown = [d for d in outside_by_key[task["key"]] if d not in existing_keys]
        if unknown:
            raise NonRetryableError(f"invalid spawn: task '{task['key']}' depends on unknown task(s) {unknown}")
        task["depends_on"] = list(dict.fromkeys([parent_key, *outside_by_key[task["key"]], *task["depends_on"]]))
    return tasks
