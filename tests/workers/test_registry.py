"""The agent registry over REST: everyone lists, only staff register."""

from __future__ import annotations

import pytest

from agents.models import AgentDefinition
from agents.registry import agent_get

HTTP_AGENT = {
    "name": "translate",
    "kind": "http",
    "url": "http://127.0.0.1:8149/translate",
    "secret": "k-very-secret-xyz",
}


def test_a_non_staff_user_cannot_register_an_agent(alice):
    response = alice.post("/agents", HTTP_AGENT, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert not AgentDefinition.objects.exists()
    assert agent_get("translate") is None


def test_staff_register_an_http_agent_that_everyone_sees_without_its_secret(staff, alice):
    response = staff.post("/agents", {**HTTP_AGENT, "concurrency": 2, "queue": "default"}, format="json")
    assert response.status_code == 201, response.content
    listed = {a["name"]: a for a in alice.get("/agents").json()["agents"]}
    translate = listed["translate"]
    assert translate["kind"] == "http" and translate["source"] == "database" and translate["concurrency"] == 2
    assert translate["circuit"]["state"] == "closed"
    assert set(translate["health"]) == {"status", "workers", "running"}
    assert "secret" not in translate and "k-very-secret-xyz" not in str(translate)
    assert listed["echo"]["kind"] == "python" and listed["planner"]["kind"] == "planner"
    # Usable in a plan at once, by this process and (through Redis) by every other.
    assert agent_get("translate").url == HTTP_AGENT["url"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "http", "secret": "k"}, "url"),
        ({"name": "x", "kind": "http", "url": "http://127.0.0.1:1/"}, "secret"),
        ({"name": "x", "kind": "python"}, "kind"),
        ({"name": "bad name!", "kind": "http", "url": "http://a.b/", "secret": "k"}, "name"),
        ({"name": "x", "kind": "http", "url": "ftp://a.b/", "secret": "k"}, "url"),
        ({"name": "x", "kind": "http", "url": "http://a.b/", "secret": "k", "timeout": "5"}, "timeout"),
    ],
)
def test_a_bad_agent_definition_is_a_400_naming_the_field(staff, body, field):
    response = staff.post("/agents", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not AgentDefinition.objects.exists()


def test_an_agent_name_already_taken_is_a_409(staff):
    assert staff.post("/agents", {**HTTP_AGENT, "name": "echo"}, format="json").status_code == 409
    assert staff.post("/agents", HTTP_AGENT, format="json").status_code == 201
    assert staff.post("/agents", HTTP_AGENT, format="json").status_code == 409
