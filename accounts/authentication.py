"""`Authorization: Token <key>` (DRF convention) and `Authorization: Bearer <key>`."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from accounts.models import ApiToken, token_digest

KEYWORDS = (b"token", b"bearer")


def user_for_digest(digest: str):
    """The active user owning the token with this digest, if it exists and has not expired."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    return token.user


def user_for_raw_token(raw: str):
    """The active user owning this raw key (unexpired, not revoked), or None."""
    return user_for_digest(token_digest(raw))


class HashedTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Token <key>' or 'Bearer <key>'.")
        try:
            raw = parts[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Token contains invalid characters.") from None
        user = user_for_raw_token(raw)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return (user, raw)

    def authenticate_header(self, request) -> str:
        return 'Token realm="api"'
