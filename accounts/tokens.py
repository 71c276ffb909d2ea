"""The lifecycle of API tokens, as users of GitHub or GitLab tokens expect it.

A token has a name and, optionally, an expiry; its owner lists theirs and revokes any
of them (another user's token answers 404, like every object that is not yours). Each
user holds at most ``AGENTBUS_MAX_TOKENS_PER_USER`` live tokens, so a stolen password
cannot mint an unbounded supply. Every token and session of a user dies when the
password changes or the account is deactivated (``accounts.signals``); open websockets
are told at once (``accounts.ws_guard``).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import ApiToken
from core.errors import QuotaExceeded


def tokens_live(*, user) -> QuerySet[ApiToken]:
    """The user's tokens that still authenticate, newest first."""
    return ApiToken.objects.filter(user=user).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


def token_issue(*, user, name: str = "", expires_in: int | None = None) -> tuple[ApiToken, str]:
    """A new token for ``user`` (its raw key is returned once); expired ones are swept."""
    ApiToken.objects.filter(user=user, expires_at__lte=timezone.now()).delete()
    limit = settings.AGENTBUS_MAX_TOKENS_PER_USER
    if tokens_live(user=user).count() >= limit:
        raise QuotaExceeded(
            f"You already have {limit} tokens; revoke one (DELETE /auth/tokens/{{id}}) first.",
            code="too_many_tokens",
        )
    expires_at = timezone.now() + timedelta(seconds=expires_in) if expires_in else None
    return ApiToken.issue(user=user, name=name, expires_at=expires_at)


def token_revoke(*, user, token_id: int) -> None:
    """Delete one of the user's own tokens; anyone else's, or none, is a 404."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise Http404("No such token.")


def tokens_revoke_all(*, user) -> int:
    """Every token of the user (a password change, a deactivation); how many."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted
