"""The /app/memory page: search the caller's memory, see scores and provenance, delete.

Same selectors and services as the REST API; session login like the rest of /app/.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from core.errors import ApplicationError
from memory.selectors import (
    SEARCH_MODES,
    memory_get_for_write,
    memory_list,
    memory_search,
)
from memory.services import memory_delete

RECENT = 25


@login_required
@require_GET
def memory_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:2000]
    namespace = request.GET.get("namespace", "").strip()[:100] or None
    mode = request.GET.get("mode") if request.GET.get("mode") in SEARCH_MODES else "hybrid"
    context = {"query": query, "namespace": namespace or "", "mode": mode, "modes": SEARCH_MODES, "hits": None}
    try:
        if query:
            context["hits"] = memory_search(user=request.user, query=query, namespace=namespace, k=20, mode=mode)
        else:
            context["recent"] = list(memory_list(user=request.user, namespace=namespace)[:RECENT])
    except Http404:
        messages.error(request, f"No such namespace: {namespace}.")
        context["recent"] = []
    return render(request, "memory/memory.html", context)


@login_required
@require_POST
def memory_delete_page(request: HttpRequest, memory_id) -> HttpResponse:
    try:
        memory_delete(memory=memory_get_for_write(user=request.user, memory_id=memory_id), actor=request.user)
        messages.success(request, "Memory deleted.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    back = request.POST.get("next", "")
    page = reverse("app-memory")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}) or not back.startswith(page):
        back = page
    return redirect(back)
