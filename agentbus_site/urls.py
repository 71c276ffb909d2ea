"""URLs. API seed paths work exactly as written, with or without a trailing slash."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from accounts.token_views import TokenListView, TokenRevokeView
from accounts.views import TokenObtainView
from agents.views import AgentListView
from core.openapi import DocsView, SchemaView
from jobs.artifact_views import ArtifactDownloadView
from jobs.dashboard.pages import job_cancel_page, job_detail_page, job_list_page, job_new_page, job_retry_page
from jobs.stream_views import JobStreamView
from jobs.views import JobCancelView, JobDetailView, JobEventsView, JobListView, JobResultsView
from ops.health import healthz, readyz
from ops.metrics import metrics_view
from ops.system import SystemView

UUID = r"(?P<job_id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="app-jobs", permanent=False)),
    re_path(r"^auth/token/?$", TokenObtainView.as_view(), name="auth-token"),
    re_path(r"^auth/tokens/?$", TokenListView.as_view(), name="auth-tokens"),
    re_path(r"^auth/tokens/(?P<token_id>[0-9]{1,18})/?$", TokenRevokeView.as_view(), name="auth-token-revoke"),
    re_path(r"^jobs/?$", JobListView.as_view(), name="job-list"),
    re_path(rf"^jobs/{UUID}/?$", JobDetailView.as_view(), name="job-detail"),
    re_path(rf"^jobs/{UUID}/results/?$", JobResultsView.as_view(), name="job-results"),
    re_path(rf"^jobs/{UUID}/cancel/?$", JobCancelView.as_view(), name="job-cancel"),
    re_path(rf"^jobs/{UUID}/events/?$", JobEventsView.as_view(), name="job-events"),
    re_path(rf"^jobs/{UUID}/stream/?$", JobStreamView.as_view(), name="job-stream"),
    re_path(
        # A UUID for the artifact too: a 36-character id of hex and dashes in the wrong
        # places used to reach the query and fail there (a 500, found by schemathesis).
        rf"^jobs/{UUID}/artifacts/{UUID.replace('job_id', 'artifact_id')}/?$",
        ArtifactDownloadView.as_view(),
        name="job-artifact",
    ),
    re_path(r"^agents/?$", AgentListView.as_view(), name="agent-list"),
    re_path(r"^healthz/?$", healthz, name="healthz"),
    re_path(r"^readyz/?$", readyz, name="readyz"),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    re_path(r"^system/?$", SystemView.as_view(), name="system"),
    re_path(r"^schema/?$", SchemaView.as_view(), name="schema"),
    re_path(r"^docs/?$", DocsView.as_view(), name="docs"),
    # Memory: POST /memory/store, GET /memory/search, /memory/{id}, /app/memory (memory/urls.py).
    path("", include("memory.urls")),
    # The dashboard (server-rendered pages, session login).
    # The dashboard's home is /app/ (what reverse() and redirects give); /app works too.
    re_path(r"^app/$", job_list_page, name="app-jobs"),
    re_path(r"^app$", RedirectView.as_view(pattern_name="app-jobs", permanent=False)),
    re_path(r"^app/jobs/new/?$", job_new_page, name="app-job-new"),
    re_path(rf"^app/jobs/{UUID}/?$", job_detail_page, name="app-job"),
    re_path(rf"^app/jobs/{UUID}/cancel/?$", job_cancel_page, name="app-job-cancel"),
    re_path(rf"^app/jobs/{UUID}/retry/?$", job_retry_page, name="app-job-retry"),
    path("", include("jobs.reviews.urls")),  # /reviews API, /app/inbox, /app/reviews/{id}
    path("", include("schedules.urls")),  # /schedules API, /app/schedules
    path("", include("webhooks.urls")),  # /webhooks API
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]

_HTML_PREFIXES = ("/app/", "/admin/", "/accounts/")


def _json_not_found(request, exception=None):
    if request.path.startswith(_HTML_PREFIXES):
        from django.views.defaults import page_not_found

        return page_not_found(request, exception)
    return JsonResponse({"error": "not_found", "detail": f"No such resource: {request.path}"}, status=404)


def _json_server_error(request):
    return JsonResponse({"error": "server_error", "detail": "Internal server error."}, status=500)


def _json_bad_request(request, exception=None):
    # Outside DRF (forms, admin, pages) Django turns an oversized body into a 400 through
    # this handler; say what it is, with the status and shape the API uses for it.
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(
            {"error": "request_too_large", "detail": "The request body is larger than the server accepts."},
            status=413,
        )
    return JsonResponse({"error": "bad_request", "detail": "Bad request."}, status=400)


handler404 = _json_not_found
handler500 = _json_server_error
handler400 = _json_bad_request
