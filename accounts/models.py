"""API tokens, stored hashed.

DRF's own authtoken keeps the key in plain text, so a database leak hands out every
user's credentials. Here only a SHA-256 digest is stored; the key is shown once, when
it is created. A token is 32 random bytes, so a fast hash is enough (no salt or slow
KDF is needed against guessing, unlike a password).
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    # Used by HashedTokenAuthentication on every API request: unique index.
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters, so a user can tell their tokens apart in the admin.
    prefix = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # None: until revoked. Checked on every request (accounts.authentication).
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, *, user, name: str = "", expires_at=None) -> tuple[ApiToken, str]:
        """Create a token; returns it with the raw key, which is never stored."""
        raw = secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, digest=token_digest(raw), prefix=raw[:8], expires_at=expires_at
        )
        return token, raw
