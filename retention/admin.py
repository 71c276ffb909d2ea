from __future__ import annotations

from django.contrib import admin

from retention.models import RetentionPolicy


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ("user", "job_days")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
