from django.contrib import admin

from accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at")
    search_fields = ("user__username", "name", "prefix")
    readonly_fields = ("prefix", "created_at")
    raw_id_fields = ("user",)

    def has_add_permission(self, request) -> bool:
        # The raw key must be shown to its owner once; POST /auth/token does that.
        return False
