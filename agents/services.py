"""Staff register HTTP and LLM agents at run time; every process sees them at once."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from agents.models import AgentDefinition
from agents.registry import agent_defined_outside_database, agents_changed
from core.errors import Conflict


def agent_definition_create(*, data: dict, created_by):
    """Register an HTTP or LLM agent at run time (staff); every process sees it at once."""
    name = data["name"]
    if agent_defined_outside_database(name) or AgentDefinition.objects.filter(name=name).exists():
        raise Conflict(
            f"An agent named '{name}' is already registered.",
            code="agent_exists",
            fields={"name": ["already registered"]},
        )
    try:
        with transaction.atomic():
            definition = AgentDefinition.objects.create(created_by=created_by, **data)
    except IntegrityError:  # registered concurrently under the same name
        raise Conflict(
            f"An agent named '{name}' is already registered.",
            code="agent_exists",
            fields={"name": ["already registered"]},
        ) from None
    transaction.on_commit(agents_changed)
    agents_changed()
    return definition
