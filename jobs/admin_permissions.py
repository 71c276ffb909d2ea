"""Admin actions need a model permission, not just staff status.

Our ModelAdmins are read-only (``has_change_permission`` is False: every change goes
through a service), so the actions (cancel, retry, requeue, approve, reject) declare
``permissions=["operate"]``, which Django checks with ``has_operate_permission``: the
user's *change* permission on the model (``jobs.change_job``, ...), granted per user or
group in the admin; superusers have it. A view-only operator sees no action.
"""

from __future__ import annotations

from django.contrib.auth import get_permission_codename


class OperatePermission:
    """Mixin for a ModelAdmin whose actions declare ``permissions=["operate"]``."""

    def has_operate_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")
