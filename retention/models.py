"""A user's own retention: how long their finished jobs keep events, outputs and artifacts."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RetentionPolicy(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="retention")
    # Null: the deployment's AGENTBUS_RETENTION_DAYS; 0: kept for ever.
    job_days = models.FloatField(
        null=True, blank=True, help_text="Days after a job finished that its details are purged (0: never)."
    )

    class Meta:
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return f"{self.user}: {self.job_days if self.job_days is not None else 'deployment default'} days"
