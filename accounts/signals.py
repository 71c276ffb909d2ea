"""Credentials die with the password: a password change or a deactivation revokes every
API token of the user and tells the user's open websockets to check again.

Sessions need no sweep: Django stores a hash of the password in each session and refuses
a session whose hash no longer matches (``django.contrib.auth.get_user``), and an inactive
user's session no longer authenticates; websockets re-run that same check
(``accounts.ws_guard``).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import ApiToken
from accounts.tokens import tokens_revoke_all
from accounts.ws_guard import auth_recheck_notify

User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="accounts.credentials_changing")
def _note_credential_change(sender, instance, update_fields=None, **kwargs) -> None:
    instance._credentials_changed = False
    if instance.pk is None or (update_fields is not None and not {"password", "is_active"} & set(update_fields)):
        return  # a new user, or a save that touches neither (last_login on every login)
    old = User.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if old is not None:
        instance._credentials_changed = old["password"] != instance.password or (
            old["is_active"] and not instance.is_active
        )


@receiver(post_save, sender=User, dispatch_uid="accounts.credentials_changed")
def _revoke_on_credential_change(sender, instance, created, **kwargs) -> None:
    if getattr(instance, "_credentials_changed", False):
        tokens_revoke_all(user=instance)
        transaction.on_commit(lambda: auth_recheck_notify(instance.pk))


@receiver(post_delete, sender=ApiToken, dispatch_uid="accounts.token_revoked")
def _recheck_on_token_revoked(sender, instance, **kwargs) -> None:
    transaction.on_commit(lambda: auth_recheck_notify(instance.user_id))


@receiver(user_logged_out, dispatch_uid="accounts.logged_out")
def _recheck_on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        transaction.on_commit(lambda: auth_recheck_notify(user.pk))
