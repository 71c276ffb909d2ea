"""Admin for review gates with their history (imported by jobs/admin.py).

Read-only like the rest of the jobs admin: decisions go through jobs.reviews (the API
or the review page), so the task's state, the audit trail and the event log never
disagree. An operator can act on a stuck gate with the actions below, which call the
same services.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from core.errors import ApplicationError
from jobs.admin_permissions import OperatePermission
from jobs.models import Review, ReviewAction, ReviewStatus
from jobs.reviews.decisions import review_decide


class ReviewActionInline(admin.TabularInline):
    model = ReviewAction
    fields = ("at", "action", "actor", "decision", "comment", "before", "after")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


def _decide_each(modeladmin, request, queryset, decision: str) -> None:
    done, refused = 0, []
    for review in queryset.filter(status=ReviewStatus.PENDING):
        try:
            review_decide(
                review_id=review.id, user=request.user, decision=decision, comment=f"{decision} from the admin"
            )
            done += 1
        except ApplicationError as exc:
            refused.append(f"{str(review.id)[:8]}: {exc.message}")
    if done:
        modeladmin.message_user(request, f"{decision}: {done} review(s).", messages.SUCCESS)
    for line in refused[:20]:
        modeladmin.message_user(request, line, messages.WARNING)


@admin.action(description="Approve selected pending reviews", permissions=["operate"])
def approve_reviews(modeladmin, request, queryset):
    _decide_each(modeladmin, request, queryset, "approve")


@admin.action(description="Reject selected pending reviews", permissions=["operate"])
def reject_reviews(modeladmin, request, queryset):
    _decide_each(modeladmin, request, queryset, "reject")


@admin.register(Review)
class ReviewAdmin(OperatePermission, admin.ModelAdmin):
    list_display = (
        "short_id",
        "kind",
        "status",
        "job_link",
        "task",
        "assignee",
        "reviewer_group",
        "claimed_by",
        "decision",
        "decided_by",
        "deadline",
        "created_at",
    )
    list_filter = ("status", "kind", "decision", "default_outcome")
    search_fields = ("=id", "=job__id", "task__key", "assignee__username", "decided_by__username", "comment")
    list_select_related = ("job", "task", "assignee", "reviewer_group", "claimed_by", "decided_by")
    date_hierarchy = "created_at"
    actions = (approve_reviews, reject_reviews)
    inlines = (ReviewActionInline,)
    readonly_fields = tuple(f.name for f in Review._meta.fields) + ("review_page",)
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False  # gates are opened by the orchestrator and the workers

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="review", ordering="id")
    def short_id(self, review: Review) -> str:
        return str(review.id)[:8]

    @admin.display(description="job", ordering="job")
    def job_link(self, review: Review) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:jobs_job_change", args=[review.job_id]), str(review.job_id)[:8]
        )

    @admin.display(description="page")
    def review_page(self, review: Review) -> str:
        return format_html(
            '<a href="{}">open the review page</a>', reverse("review-page", kwargs={"review_id": review.id})
        )
