"""Operators register agents in the Django admin too."""

from __future__ import annotations

from django.test import Client

from agents.models import AgentDefinition
from agents.registry import agent_get


def test_an_operator_registers_an_llm_agent_in_the_admin_and_it_is_usable_at_once(db, settings):
    from django.contrib.auth import get_user_model

    settings.AGENTBUS_LLM_BASE_URL = "http://127.0.0.1:8141/v1"
    admin = get_user_model().objects.create_superuser("root", password="pw-root-long")
    client = Client()
    client.force_login(admin)
    assert client.get("/admin/agents/agentdefinition/add/", secure=True).status_code == 200
    form = {
        "name": "poet", "kind": "llm", "description": "", "enabled": "on", "queue": "default", "timeout": "30",
        "max_attempts": "2", "retry_backoff": "", "concurrency": "3", "breaker_fail_max": "5",
        "breaker_reset_timeout": "30", "url": "", "secret": "", "model": "tiny", "base_url": "", "api_key": "",
        "system_prompt": "Rhyme.", "max_tokens": "",
    }  # fmt: skip
    response = client.post("/admin/agents/agentdefinition/add/", form, secure=True)
    assert response.status_code == 302, response.content[:2000]
    assert AgentDefinition.objects.get(name="poet").created_by == admin
    spec = agent_get("poet")
    assert (spec.kind, spec.model, spec.concurrency, spec.source) == ("llm", "tiny", 3, "database")
    assert client.get("/admin/agents/agentdefinition/", secure=True).status_code == 200
