"""Safe defaults with DEBUG off (as the suite runs): no demo superuser with a known
password, /metrics closed until its token is set, /readyz details for staff only."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


def test_no_demo_user_is_created_with_debug_off():
    out = io.StringIO()
    call_command("ensure_demo_user", stdout=out)
    assert not get_user_model().objects.filter(username="demo").exists()
    assert "DEBUG is off" in out.getvalue()


def test_the_demo_user_is_still_there_for_a_laptop_with_debug_on(settings):
    settings.DEBUG = True
    call_command("ensure_demo_user", stdout=io.StringIO())
    assert get_user_model().objects.filter(username="demo", is_superuser=True).exists()


def test_metrics_need_their_token_with_debug_off(settings):
    settings.AGENTBUS_METRICS_TOKEN = ""
    response = Client().get("/metrics")
    assert response.status_code == 403
    assert "AGENTBUS_METRICS_TOKEN" in response.json()["detail"]


def test_readyz_shows_dependency_details_to_staff_only(alice):
    anonymous = Client().get("/readyz").json()
    assert set(anonymous) == {"status"}
    assert set(alice.get("/readyz").json()) == {"status"}
    staff = client_for(make_user("olive", staff=True)).get("/readyz").json()
    assert set(staff["checks"]) == {"database", "redis", "chroma"}
