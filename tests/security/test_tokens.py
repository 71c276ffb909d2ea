"""Token lifecycle: named tokens with an optional expiry, listed and revoked by their
owner only, capped per user, and all revoked by a password change or a deactivation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


def login(username: str, **extra) -> dict:
    response = APIClient().post(
        "/auth/token", {"username": username, "password": "pw-" + username, **extra}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response.json()


def as_token(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_a_named_token_with_an_expiry_is_listed_to_its_owner_without_its_key():
    make_user("olga")
    issued = login("olga", name="ci", expires_in=3600)
    assert issued["expires_at"] is not None
    listed = as_token(issued["token"]).get("/auth/tokens").json()
    assert [(t["id"], t["name"], t["prefix"]) for t in listed] == [(issued["id"], "ci", issued["token"][:8])]
    assert "token" not in listed[0] and "digest" not in listed[0]


def test_an_expired_token_no_longer_authenticates(alice):
    assert alice.get("/jobs").status_code == 200
    ApiToken.objects.filter(user=alice.user).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = alice.get("/jobs")
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_a_token_of_an_inactive_user_does_not_authenticate_even_if_it_was_left_behind(alice):
    """A deactivation through save() revokes the tokens (below); one made by a bulk
    update or straight in the database does not, and the check on each request still
    refuses the user."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=alice.user.pk).update(is_active=False)
    assert ApiToken.objects.filter(user=alice.user).exists()
    response = alice.get("/jobs")
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_an_owner_revokes_their_own_token_and_anothers_is_a_404(alice, bob):
    bobs = ApiToken.objects.get(user=bob.user)
    assert alice.delete(f"/auth/tokens/{bobs.id}").status_code == 404
    assert bob.get("/jobs").status_code == 200  # untouched

    spare = login("alice", name="spare")
    assert alice.delete(f"/auth/tokens/{spare['id']}").status_code == 204
    assert as_token(spare["token"]).get("/jobs").status_code == 401
    assert alice.delete(f"/auth/tokens/{spare['id']}").status_code == 404


@pytest.mark.parametrize("change", ["password", "deactivation"])
def test_a_password_change_or_a_deactivation_revokes_every_token_and_session(change):
    from django.test import Client

    user = make_user("pete")
    first, second = client_for(user), client_for(user)
    browser = Client()
    browser.force_login(user)
    assert browser.get("/app/").status_code == 200

    if change == "password":
        user.set_password("a-new-password-123")
    else:
        user.is_active = False
    user.save()

    assert first.get("/jobs").status_code == 401 and second.get("/jobs").status_code == 401
    assert not ApiToken.objects.filter(user=user).exists()
    assert browser.get("/app/").status_code == 302  # back to the login page


def test_a_user_cannot_mint_tokens_without_limit(settings):
    settings.AGENTBUS_MAX_TOKENS_PER_USER = 3
    make_user("quinn")
    for _ in range(3):
        login("quinn")
    refused = APIClient().post("/auth/token", {"username": "quinn", "password": "pw-quinn"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_tokens"


def test_expires_in_is_validated_and_named_in_the_error():
    make_user("rita")
    response = APIClient().post(
        "/auth/token", {"username": "rita", "password": "pw-rita", "expires_in": -5}, format="json"
    )
    assert response.status_code == 400
    assert "expires_in" in response.json()["fields"]
