"""The operators' admin for jobs, tasks and the event log.

Rows are read-only here: every change goes through the same services as the API
(cancel, retry failed tasks, requeue), so an operator cannot put a job in a state the
orchestrator does not expect. The RQ queues themselves are at /admin/rq/.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from core.errors import ApplicationError
from jobs.admin_permissions import OperatePermission
from jobs.models import Job, JobEvent, SchedulingWeight, Task
from jobs.services import job_cancel, job_requeue, job_retry_failed

admin.site.site_header = "agentbus operations"
admin.site.site_title = "agentbus admin"
admin.site.index_title = "Jobs, tasks, agents and users"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class TaskInline(ReadOnlyInline):
    model = Task
    fields = ("key", "agent", "status", "attempt", "max_attempts", "queued_at", "started_at", "finished_at", "error")
    readonly_fields = fields


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    fields = ("seq", "type", "task", "status", "data", "at")
    readonly_fields = fields
    show_change_link = False
    classes = ("collapse",)


def _run_on_each(modeladmin, request, queryset, service, done: str) -> None:
    """Apply a service to each selected job; one refusal does not stop the others."""
    ok, refused = 0, []
    for job in queryset:
        try:
            service(job=job)
            ok += 1
        except ApplicationError as exc:
            refused.append(f"{str(job.id)[:8]}: {exc.message}")
    if ok:
        modeladmin.message_user(request, f"{done}: {ok} job(s).", messages.SUCCESS)
    for line in refused[:20]:
        modeladmin.message_user(request, line, messages.WARNING)


@admin.action(
    description="Cancel selected jobs (stops running tasks)", permissions=["operate"]
)  # needs the change permission
def cancel_jobs(modeladmin, request, queryset):
    _run_on_each(modeladmin, request, queryset, job_cancel, "Cancelled")


@admin.action(description="Retry failed tasks of selected jobs", permissions=["operate"])
def retry_failed_tasks(modeladmin, request, queryset):
    _run_on_each(modeladmin, request, queryset, job_retry_failed, "Retrying")


@admin.action(
    description="Requeue: resend queued tasks and run due retries now", permissions=["operate"]
)  # needs the change permission
def requeue_jobs(modeladmin, request, queryset):
    sent = sum(job_requeue(job=job) for job in queryset)
    modeladmin.message_user(request, f"Requeued {sent} task(s).", messages.SUCCESS)


@admin.register(Job)
class JobAdmin(OperatePermission, admin.ModelAdmin):
    list_display = (
        "short_id",
        "requirements_short",
        "owner",
        "status",
        "task_count",
        "priority",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "priority", "created_at", "owner")
    search_fields = ("=id", "requirements", "owner__username", "idempotency_key")
    date_hierarchy = "created_at"
    list_select_related = ("owner",)
    actions = (cancel_jobs, retry_failed_tasks, requeue_jobs)
    inlines = (TaskInline, JobEventInline)
    readonly_fields = (
        "id", "dashboard_link", "owner", "status", "requirements", "plan", "review_plan", "priority", "metadata",
        "result", "error", "idempotency_key", "last_seq", "advanced_seq", "created_at", "started_at", "finished_at",
    )  # fmt: skip
    fields = readonly_fields
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_tasks=Count("tasks"))

    def has_add_permission(self, request) -> bool:
        return False  # jobs come in through POST /jobs or the dashboard, validated

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # view-only: changes go through the actions above, i.e. the services

    @admin.display(description="job", ordering="id")
    def short_id(self, job: Job) -> str:
        return str(job.id)[:8]

    @admin.display(description="requirements")
    def requirements_short(self, job: Job) -> str:
        text = (job.requirements or "").strip().replace("\n", " ")
        return text[:60] + ("…" if len(text) > 60 else "")

    @admin.display(description="tasks", ordering="n_tasks")
    def task_count(self, job: Job) -> int:
        return job.n_tasks

    @admin.display(description="dashboard")
    def dashboard_link(self, job: Job) -> str:
        return format_html('<a href="{}">open the job page</a>', reverse("app-job", kwargs={"job_id": job.id}))


@admin.action(description="Requeue the jobs of selected tasks", permissions=["operate"])
def requeue_task_jobs(modeladmin, request, queryset):
    jobs = Job.objects.filter(id__in=queryset.values("job_id"))
    requeue_jobs(modeladmin, request, jobs)


@admin.register(Task)
class TaskAdmin(OperatePermission, admin.ModelAdmin):
    list_display = (
        "key",
        "job_link",
        "agent",
        "queue",
        "status",
        "priority",
        "wait_reason",
        "attempt",
        "max_attempts",
        "queued_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "agent", "queue", "wait_reason", "priority")
    search_fields = ("=id", "key", "agent", "=job__id", "error", "worker")
    list_select_related = ("job",)
    actions = (requeue_task_jobs,)
    readonly_fields = tuple(f.name for f in Task._meta.fields)
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="job", ordering="job")
    def job_link(self, task: Task) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:jobs_job_change", args=[task.job_id]), str(task.job_id)[:8]
        )


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ("seq", "job_id", "type", "status", "task", "at")
    list_filter = ("type", "status")
    search_fields = ("=job__id", "type")
    readonly_fields = ("job", "seq", "type", "task", "status", "data", "at")
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the event log is append-only


@admin.register(SchedulingWeight)
class SchedulingWeightAdmin(admin.ModelAdmin):
    """Fair shares (jobs.scheduling): a user or group of weight 2 is served twice as much
    as one of weight 1 while both have work waiting. Django's model permissions apply."""

    list_display = ("__str__", "user", "group", "weight")
    list_editable = ("weight",)
    list_display_links = ("__str__",)
    autocomplete_fields = ("user", "group")
    search_fields = ("user__username", "group__name")


# Review gates and their history live in their own module.
from jobs.reviews import admin as review_admin  # noqa: F401
