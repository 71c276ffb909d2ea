"""Who may assign a review gate to whom.

A plan task's ``"gate": {"assignee", "group"}`` puts the task's reviews in someone's inbox,
so naming is a permission, and its refusal must not tell who exists:

- anyone may name themselves as ``assignee``, and a group they belong to as ``group``;
- staff may name any active user and any group (a name that does not exist is a 400 for them);
- everything else is refused with one message, whether or not the name exists.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.errors import ApplicationError

REFUSED = "you may assign a gate only to yourself or to a group you belong to"


def _allowed(owner, kind: str, name: str) -> str | None:
    """None when ``owner`` may name ``name``; else the problem to report."""
    if owner.is_staff:
        if kind == "assignee":
            exists = get_user_model().objects.filter(username=name, is_active=True).exists()
            return None if exists else f"no active user '{name}'"
        return None if Group.objects.filter(name=name).exists() else f"no group '{name}'"
    if kind == "assignee":
        return None if name == owner.get_username() else REFUSED
    return None if owner.groups.filter(name=name).exists() else REFUSED


def gates_authorize(*, owner, plan: dict, prefix: str = "plan") -> None:
    """Raise a 400 naming each gate field ``owner`` may not set (the plan is validated)."""
    errors: dict[str, list[str]] = {}
    for index, task in enumerate(plan.get("tasks") or []):
        gate = task.get("gate") if isinstance(task, dict) else None
        if not isinstance(gate, dict):
            continue
        for kind in ("assignee", "group"):
            if gate.get(kind):
                problem = _allowed(owner, kind, gate[kind])
                if problem:
                    errors[f"{prefix}.tasks[{index}].gate.{kind}"] = [problem]
    if errors:
        first = next(iter(errors))
        raise ApplicationError(f"{first}: {errors[first][0]}", code="invalid_plan", fields=errors)
